//! The `webhook_parse` fuzz target's check on the stable toolchain: every committed seed,
//! then seeded random mutations of them. A short, deterministic stand-in for
//! `cargo fuzz run webhook_parse`, which needs nightly (see fuzz/fuzz_targets/).

#[allow(dead_code)]
mod webhook {
    include!("../fuzz/webhook_parse_check.rs");
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/webhook_parse");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(seeds.len() >= 4, "seeds missing in {}", dir.display());
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

/// Bytes the parsers care about: JSON and base64 punctuation, units, separators.
const INTERESTING: &[u8] = b"{}[]\",:\\\n =v1,whsec_0123456789.smh-+/eE\x00\xff";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        // Byte 0 selects the parser: leave it alone.
        let len = v.len().max(1);
        match rng.below(5) {
            0 if v.len() > 1 => {
                let i = 1 + rng.below(v.len() - 1);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            1 if v.len() > 1 => {
                let i = 1 + rng.below(v.len() - 1);
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = 1 + rng.below(len);
                let i = i.min(v.len());
                v.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if v.len() > 1 => v.truncate(1 + rng.below(v.len() - 1)),
            _ if v.len() > 2 => {
                let i = 1 + rng.below(v.len() - 1);
                v.remove(i);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn webhook_parse_seeds_and_mutations() {
    let seeds = seeds();
    for seed in &seeds {
        webhook::check(seed);
    }
    let mut rng = Rng(0x5EED_0000_00DE_AD01);
    let runs = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    for _ in 0..runs {
        let seed = &seeds[rng.below(seeds.len())];
        webhook::check(&mutate(&mut rng, seed));
    }
}
