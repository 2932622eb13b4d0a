/// Identifies a timer scheduled on an `EventLoop`; stale ids are ignored safely.
public struct TimerID: Hashable, Sendable {
    let slot: Int32
    let generation: UInt32
}

/// An indexed binary min-heap of deadlines: schedule, reschedule and cancel are O(log n)
/// with no garbage left behind, so a connection can move its one timeout on every request
/// without the heap growing. Loop-confined; not thread-safe.
struct TimerQueue {
    private struct Slot {
        var deadline: UInt64 = 0
        var generation: UInt32 = 0
        var heapIndex: Int32 = -1
        var handler: (() -> Void)?
    }

    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    private var heap: [Int32] = []

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    /// The earliest deadline, if any timer is pending.
    var nextDeadline: UInt64? { heap.first.map { slots[Int($0)].deadline } }

    mutating func schedule(at deadline: UInt64, _ handler: @escaping () -> Void) -> TimerID {
        let slot: Int32
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = Int32(slots.count)
            slots.append(Slot())
        }
        slots[Int(slot)].deadline = deadline
        slots[Int(slot)].generation &+= 1
        slots[Int(slot)].handler = handler
        slots[Int(slot)].heapIndex = Int32(heap.count)
        heap.append(slot)
        siftUp(heap.count - 1)
        return TimerID(slot: slot, generation: slots[Int(slot)].generation)
    }

    /// Moves a pending timer to a new deadline; false if it already fired or was cancelled.
    @discardableResult
    mutating func reschedule(_ id: TimerID, to deadline: UInt64) -> Bool {
        guard let index = liveHeapIndex(id) else { return false }
        let old = slots[Int(id.slot)].deadline
        slots[Int(id.slot)].deadline = deadline
        if deadline < old { siftUp(index) } else { siftDown(index) }
        return true
    }

    /// The deadline of a pending timer.
    func deadline(of id: TimerID) -> UInt64? {
        liveHeapIndex(id).map { _ in slots[Int(id.slot)].deadline }
    }

    mutating func cancel(_ id: TimerID) {
        guard let index = liveHeapIndex(id) else { return }
        remove(at: index)
    }

    /// Removes and returns the handler of the earliest timer if it is due at `now`.
    mutating func popExpired(now: UInt64) -> (() -> Void)? {
        guard let top = heap.first, slots[Int(top)].deadline <= now else { return nil }
        let handler = slots[Int(top)].handler
        remove(at: 0)
        return handler
    }

    private func liveHeapIndex(_ id: TimerID) -> Int? {
        guard id.slot >= 0, Int(id.slot) < slots.count else { return nil }
        let slot = slots[Int(id.slot)]
        guard slot.generation == id.generation, slot.heapIndex >= 0 else { return nil }
        return Int(slot.heapIndex)
    }

    private mutating func remove(at index: Int) {
        let slot = heap[index]
        let last = heap.count - 1
        if index != last {
            heap.swapAt(index, last)
            slots[Int(heap[index])].heapIndex = Int32(index)
        }
        heap.removeLast()
        slots[Int(slot)].heapIndex = -1
        slots[Int(slot)].handler = nil
        freeSlots.append(slot)
        if index < heap.count {
            siftDown(index)
            siftUp(index)
        }
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            if slots[Int(heap[parent])].deadline <= slots[Int(heap[child])].deadline { break }
            swapEntries(parent, child)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = parent * 2 + 1
            if left >= heap.count { return }
            var smallest = left
            let right = left + 1
            if right < heap.count, slots[Int(heap[right])].deadline < slots[Int(heap[left])].deadline {
                smallest = right
            }
            if slots[Int(heap[parent])].deadline <= slots[Int(heap[smallest])].deadline { return }
            swapEntries(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swapEntries(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slots[Int(heap[a])].heapIndex = Int32(a)
        slots[Int(heap[b])].heapIndex = Int32(b)
    }
}
