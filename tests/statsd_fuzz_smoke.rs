//! The `statsd_line` fuzz target's check on the stable toolchain: every committed seed,
//! then seeded random mutations of them (a short, deterministic stand-in for
//! `cargo +nightly fuzz run statsd_line`).

mod statsd_line {
    include!("../fuzz/statsd_line_check.rs");
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/statsd_line");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
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

/// Mutations biased towards the bytes the syntax cares about.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    const SYNTAX: &[u8] = b":|@#,.-+e0123456789\n\0_{}cgmshdT";
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = SYNTAX[rng.below(SYNTAX.len())];
            }
            1 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, SYNTAX[rng.below(SYNTAX.len())]);
            }
            2 if !v.is_empty() => {
                v.remove(rng.below(v.len()));
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

#[test]
fn statsd_line_seeds_and_mutations() {
    let seeds = seeds();
    for seed in &seeds {
        statsd_line::check(seed);
    }
    let mut rng = Rng(0x5EED_5747_5D00_0001);
    for _ in 0..20_000 {
        let seed = &seeds[rng.below(seeds.len())];
        statsd_line::check(&mutate(&mut rng, seed));
    }
}
