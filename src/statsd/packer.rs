//! Packing lines into datagrams: sans-IO, so the rules are tested without a socket.
//!
//! A unit (one metric's line, or the two lines of a negative gauge set) is never split:
//! it goes into the current datagram if it fits under the payload limit with its `\n`
//! separator, else the current datagram is emitted first. A unit longer than the limit on
//! its own is emitted alone (the daemon may still take it; over UDP the kernel may
//! fragment or refuse it) and flagged `oversized` so it is counted.

/// One datagram ready to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Datagram<'a> {
    pub(crate) payload: &'a [u8],
    /// Metric lines in the payload.
    pub(crate) lines: u64,
    /// A single unit longer than the payload limit.
    pub(crate) oversized: bool,
}

/// Lines joined by `\n` up to `max_payload` bytes.
#[derive(Debug)]
pub(crate) struct Packer {
    buf: Vec<u8>,
    lines: u64,
    max_payload: usize,
}

fn lines_in(unit: &[u8]) -> u64 {
    1 + unit.iter().filter(|&&b| b == b'\n').count() as u64
}

impl Packer {
    pub(crate) fn new(max_payload: usize) -> Packer {
        Packer {
            buf: Vec::with_capacity(max_payload),
            lines: 0,
            max_payload,
        }
    }

    /// Adds one unit, emitting whatever datagrams that completes.
    pub(crate) fn add(&mut self, unit: &[u8], emit: &mut impl FnMut(Datagram<'_>)) {
        if unit.is_empty() {
            return;
        }
        if unit.len() > self.max_payload {
            self.flush(emit);
            emit(Datagram {
                payload: unit,
                lines: lines_in(unit),
                oversized: true,
            });
            return;
        }
        let separator = usize::from(!self.buf.is_empty());
        if self.buf.len() + separator + unit.len() > self.max_payload {
            self.flush(emit);
        }
        if !self.buf.is_empty() {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(unit);
        self.lines += lines_in(unit);
        if self.buf.len() == self.max_payload {
            self.flush(emit);
        }
    }

    /// Emits the datagram being filled, if any.
    pub(crate) fn flush(&mut self, emit: &mut impl FnMut(Datagram<'_>)) {
        if self.buf.is_empty() {
            return;
        }
        emit(Datagram {
            payload: &self.buf,
            lines: self.lines,
            oversized: false,
        });
        self.buf.clear();
        self.lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pack(max: usize, units: &[Vec<u8>]) -> Vec<(Vec<u8>, u64, bool)> {
        let mut p = Packer::new(max);
        let mut out = Vec::new();
        let mut emit = |d: Datagram<'_>| out.push((d.payload.to_vec(), d.lines, d.oversized));
        for u in units {
            p.add(u, &mut emit);
        }
        p.flush(&mut emit);
        out
    }

    #[test]
    fn joins_with_newlines_up_to_the_limit() {
        let units: Vec<Vec<u8>> = vec![b"a:1|c".to_vec(), b"b:2|c".to_vec(), b"c:3|c".to_vec()];
        // 5 + 1 + 5 = 11 fits in 11; the third starts a new datagram.
        assert_eq!(
            pack(11, &units),
            vec![
                (b"a:1|c\nb:2|c".to_vec(), 2, false),
                (b"c:3|c".to_vec(), 1, false)
            ]
        );
        assert_eq!(
            pack(1432, &units),
            vec![(b"a:1|c\nb:2|c\nc:3|c".to_vec(), 3, false)]
        );
    }

    #[test]
    fn oversized_unit_goes_alone_after_what_was_pending() {
        let units: Vec<Vec<u8>> = vec![
            b"a:1|c".to_vec(),
            b"long_name:1|c".to_vec(),
            b"b:1|c".to_vec(),
        ];
        assert_eq!(
            pack(8, &units),
            vec![
                (b"a:1|c".to_vec(), 1, false),
                (b"long_name:1|c".to_vec(), 1, true),
                (b"b:1|c".to_vec(), 1, false)
            ]
        );
    }

    #[test]
    fn a_two_line_unit_is_not_split_and_counts_two_lines() {
        let units: Vec<Vec<u8>> = vec![b"x:1|c".to_vec(), b"g:0|g\ng:-5|g".to_vec()];
        assert_eq!(
            pack(12, &units),
            vec![
                (b"x:1|c".to_vec(), 1, false),
                (b"g:0|g\ng:-5|g".to_vec(), 2, false)
            ]
        );
    }

    proptest! {
        #[test]
        fn never_over_the_limit_never_split_nothing_lost(
            max in 1usize..200,
            units in proptest::collection::vec(
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b':'), Just(b'|'), Just(b'1')], 1..60),
                0..80,
            ),
        ) {
            let datagrams = pack(max, &units);
            let mut rebuilt: Vec<Vec<u8>> = Vec::new();
            for (payload, lines, oversized) in &datagrams {
                prop_assert!(!payload.is_empty());
                if *oversized {
                    prop_assert!(payload.len() > max);
                    rebuilt.push(payload.clone());
                } else {
                    prop_assert!(payload.len() <= max, "{} > {}", payload.len(), max);
                    rebuilt.extend(payload.split(|&b| b == b'\n').map(|l| l.to_vec()));
                }
                prop_assert_eq!(*lines, 1 + payload.iter().filter(|&&b| b == b'\n').count() as u64);
            }
            // The units come out whole, in order, none lost or duplicated (none contain
            // `\n` here, so splitting on it recovers them exactly).
            prop_assert_eq!(rebuilt, units.clone());
            // Greedy: no two neighbouring regular datagrams could have been one.
            for pair in datagrams.windows(2) {
                if !pair[0].2 && !pair[1].2 {
                    let first_unit_of_next = pair[1].0.split(|&b| b == b'\n').next().unwrap();
                    prop_assert!(pair[0].0.len() + 1 + first_unit_of_next.len() > max);
                }
            }
        }
    }
}
