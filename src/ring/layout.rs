//! Ring positions as `lap | index` in one `usize` (the encoding of crossbeam's
//! `ArrayQueue`): the index is the slot, the lap counts wrap-arounds. Positions are
//! therefore unique for 2^64 / `one_lap` laps, a slot is found with a mask (no division,
//! any capacity) and "full" is a single comparison: `tail == head + one_lap`.

/// The geometry of one ring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    capacity: usize,
    /// The smallest power of two above `capacity`: the index bits can hold `capacity`
    /// itself, which the stamped core needs for "filled" stamps (`position + 1`).
    one_lap: usize,
}

impl Layout {
    pub(crate) fn new(capacity: usize) -> Layout {
        assert!(capacity > 0, "a ring needs a capacity of at least 1");
        assert!(
            capacity <= usize::MAX / 4,
            "ring capacity {capacity} is too large"
        );
        Layout {
            capacity,
            one_lap: (capacity + 1).next_power_of_two(),
        }
    }

    #[inline(always)]
    pub(crate) fn capacity(self) -> usize {
        self.capacity
    }

    #[inline(always)]
    pub(crate) fn one_lap(self) -> usize {
        self.one_lap
    }

    /// The slot a position lives in.
    #[inline(always)]
    pub(crate) fn index(self, position: usize) -> usize {
        position & (self.one_lap - 1)
    }

    /// The position after `position`.
    #[inline(always)]
    pub(crate) fn next(self, position: usize) -> usize {
        if self.index(position) + 1 < self.capacity {
            position + 1
        } else {
            (position & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// How many positions have been passed to reach `position` from the start: the
    /// running total of pushes (for a tail) or pops (for a head).
    #[inline]
    pub(crate) fn count(self, position: usize) -> u64 {
        let lap = (position / self.one_lap) as u64;
        lap.wrapping_mul(self.capacity as u64) + self.index(position) as u64
    }

    /// Items between a head and a tail position.
    #[inline]
    pub(crate) fn distance(self, head: usize, tail: usize) -> usize {
        let d = self.count(tail).wrapping_sub(self.count(head)) as usize;
        // The two loads that produced head and tail are not one atomic snapshot: clamp so
        // a racing reader never reports more than the ring can hold.
        d.min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_wraps_into_the_next_lap() {
        let l = Layout::new(3);
        assert_eq!(l.one_lap(), 4);
        let mut p = 0;
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push((l.index(p), l.count(p)));
            p = l.next(p);
        }
        assert_eq!(
            seen,
            [(0, 0), (1, 1), (2, 2), (0, 3), (1, 4), (2, 5), (0, 6)]
        );
    }

    #[test]
    fn full_is_one_lap_ahead() {
        for cap in [1, 2, 3, 4, 5, 8, 1000] {
            let l = Layout::new(cap);
            let head = 0;
            let mut tail = 0;
            for _ in 0..cap {
                tail = l.next(tail);
            }
            assert_eq!(tail, head + l.one_lap(), "cap {cap}");
            assert_eq!(l.distance(head, tail), cap);
        }
    }
}
