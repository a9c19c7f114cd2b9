//! Every fuzz target's check on the stable toolchain: each committed seed, then seeded
//! random mutations of them. A short, deterministic stand-in for `cargo +nightly fuzz run
//! TARGET` (see fuzz/fuzz_targets/); the checks are the very functions the targets call,
//! shared through `include!`.
//!
//! One mutator serves every target; what differs is the bytes each syntax cares about and
//! how many leading bytes select a mode and must be left alone.

#[allow(dead_code)]
mod zmtp {
    include!("../fuzz/zmtp_decode_check.rs");
}

#[allow(dead_code)]
mod mcast {
    include!("../fuzz/mcast_decode_check.rs");
}

#[allow(dead_code)]
mod statsd_line {
    include!("../fuzz/statsd_line_check.rs");
}

#[allow(dead_code)]
mod webhook {
    include!("../fuzz/webhook_parse_check.rs");
}

/// How one target's inputs are mutated.
struct Target {
    /// Folder under fuzz/seeds.
    name: &'static str,
    /// Bytes worth inserting: length-field values, syntax punctuation.
    interesting: &'static [u8],
    /// Leading bytes that select the parser: never mutated, so every mode stays reached.
    fixed_prefix: usize,
    /// First state of the mutation generator, one per target so runs differ.
    rng_seed: u64,
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 2, "too few seeds in {}", dir.display());
    seeds.sort();
    seeds
}

/// xorshift64*: reproducible mutations without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, target: &Target, seed: &[u8]) -> Vec<u8> {
    let fixed = target.fixed_prefix.min(seed.len());
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        let mutable = v.len() - fixed;
        // An index into the mutable part, or one past its end for insertions.
        let at = |rng: &mut Rng, extra: usize| fixed + rng.below(mutable + extra);
        match rng.below(6) {
            0 if mutable > 0 => {
                let i = at(rng, 0);
                v[i] ^= 1 << rng.below(8);
            }
            1 if mutable > 0 => {
                let i = at(rng, 0);
                v[i] = rng.next() as u8;
            }
            2 if mutable > 0 => {
                let i = at(rng, 0);
                v[i] = target.interesting[rng.below(target.interesting.len())];
            }
            3 => {
                let i = at(rng, 1);
                v.insert(i, target.interesting[rng.below(target.interesting.len())]);
            }
            4 if mutable > 0 => {
                let i = at(rng, 0);
                v.remove(i);
            }
            5 if mutable > 0 => v.truncate(at(rng, 0)),
            _ => {
                let i = at(rng, 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

fn seeds_and_mutations(target: Target, check: fn(&[u8])) {
    let seeds = seeds(target.name);
    for seed in &seeds {
        check(seed);
    }
    let mut rng = Rng(target.rng_seed);
    let runs = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    for _ in 0..runs {
        let seed = &seeds[rng.below(seeds.len())];
        check(&mutate(&mut rng, &target, seed));
    }
}

/// Values that matter in a length or flags byte: 0, small, the LONG/MORE/COMMAND flags,
/// the sign bit, all ones.
const LENGTH_BYTES: &[u8] = &[0x00, 0x01, 0x02, 0x04, 0x7F, 0x80, 0xFF];

#[test]
fn zmtp_decode_seeds_and_mutations() {
    let target = Target {
        name: "zmtp_decode",
        interesting: LENGTH_BYTES,
        fixed_prefix: 0,
        rng_seed: 0x5EED_1234_ABCD_0001,
    };
    seeds_and_mutations(target, zmtp::check);
}

#[test]
fn mcast_decode_seeds_and_mutations() {
    let target = Target {
        name: "mcast_decode",
        interesting: LENGTH_BYTES,
        fixed_prefix: 0,
        rng_seed: 0x5EED_1234_ABCD_0004,
    };
    seeds_and_mutations(target, mcast::check);
}

#[test]
fn statsd_line_seeds_and_mutations() {
    let target = Target {
        name: "statsd_line",
        interesting: b":|@#,.-+e0123456789\n\0_{}cgmshdT",
        fixed_prefix: 0,
        rng_seed: 0x5EED_5747_5D00_0001,
    };
    seeds_and_mutations(target, statsd_line::check);
}

#[test]
fn webhook_parse_seeds_and_mutations() {
    let target = Target {
        name: "webhook_parse",
        // JSON and base64 punctuation, duration units, header separators.
        interesting: b"{}[]\",:\\\n =v1,whsec_0123456789.smh-+/eE\x00\xff",
        // Byte 0 selects the parser.
        fixed_prefix: 1,
        rng_seed: 0x5EED_0000_00DE_AD01,
    };
    seeds_and_mutations(target, webhook::check);
}
