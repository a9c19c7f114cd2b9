//! The fuzz targets' checks on the stable toolchain: every committed seed, then seeded
//! random mutations of them. A short, deterministic stand-in for `cargo fuzz run`, which
//! needs nightly (see fuzz/fuzz_targets/).

#[allow(dead_code)]
mod zmtp {
    include!("../fuzz/zmtp_decode_check.rs");
}

#[allow(dead_code)]
mod mcast {
    include!("../fuzz/mcast_decode_check.rs");
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
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

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
            3 if !v.is_empty() => {
                v.truncate(rng.below(v.len()));
            }
            _ => {
                // Interesting sizes into a length field: 0xFF, LONG flag, huge values.
                let i = rng.below(v.len() + 1);
                let b = [0x00, 0x01, 0x02, 0x04, 0x7F, 0xFF][rng.below(6)];
                v.insert(i, b);
            }
        }
    }
    v
}

#[test]
fn zmtp_decode_seeds_and_mutations() {
    let seeds = seeds("zmtp_decode");
    for seed in &seeds {
        zmtp::check(seed);
    }
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let runs = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    for _ in 0..runs {
        let seed = &seeds[rng.below(seeds.len())];
        zmtp::check(&mutate(&mut rng, seed));
    }
}

#[test]
fn mcast_decode_seeds_and_mutations() {
    let seeds = seeds("mcast_decode");
    for seed in &seeds {
        mcast::check(seed);
    }
    let mut rng = Rng(0x5EED_1234_ABCD_0004);
    let runs = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    for _ in 0..runs {
        let seed = &seeds[rng.below(seeds.len())];
        mcast::check(&mutate(&mut rng, seed));
    }
}
