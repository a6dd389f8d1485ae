import { GCProfiler, type GCProfilerResult } from 'node:v8'

type GCStats = GCProfilerResult['statistics'][number]['afterGC']

const used = (stats: GCStats, name: string): number =>
  stats.heapSpaceStatistics.find((space) => space.spaceName === name)?.spaceUsedSize ?? 0

/**
 * Counts the bytes that survive young collections (copied within the young generation or
 * promoted): a scavenge's cost grows with them, they hardly depend on what else the machine
 * does, and promoted bytes fill the old generation's fresh pages. It is how a retention
 * problem shows (bench/README, "What a login costs the collector"). `total()` is the sum
 * since this process started counting.
 */
export const survivorCounter = (): { total(): number } => {
  let survived = 0
  let profiler = new GCProfiler()
  profiler.start()
  return {
    total() {
      const result = profiler.stop()
      profiler = new GCProfiler()
      profiler.start()
      for (const gc of result?.statistics ?? []) {
        if (gc.gcType !== 'Scavenge') continue
        survived +=
          used(gc.afterGC, 'new_space') + Math.max(0, used(gc.afterGC, 'old_space') - used(gc.beforeGC, 'old_space'))
      }
      return survived
    },
  }
}
