//! Shared pieces of Mast's criterion benchmarks (the benches live in `benches/benches/`, one file
//! per hot path; run `cargo bench -p mast-benches --bench <name>`; figures go into
//! `docs/benchmarks.md`).
//!
//! [`Fleet`] generates a TSBS-IoT-like "readings" table: trucks with 8 tags (name, fleet, driver,
//! model, device_version, load_capacity, fuel_capacity, nominal_fuel_consumption) reporting 7
//! float fields every 10 s as bounded random walks at the precision real GPS and vehicle sensors
//! report (5 decimals for coordinates, 1–2 for the rest).

use mast_storage::WriteBatch;

/// Seconds between readings of one truck.
pub const INTERVAL_NS: i64 = 10_000_000_000;
/// Start of the generated history (2024-01-01T00:00:00Z).
pub const START_NS: i64 = 1_704_067_200_000_000_000;
/// Fields per readings row.
pub const FIELDS: [&str; 7] = [
    "latitude",
    "longitude",
    "elevation",
    "velocity",
    "heading",
    "grade",
    "fuel_consumption",
];

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Next u64.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round(v: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (v * p).round() / p
}

#[derive(Debug, Clone)]
struct Truck {
    tags: Vec<(&'static str, String)>,
    state: [f64; 7],
}

/// A fleet of trucks, each producing one readings row per interval.
#[derive(Debug, Clone)]
pub struct Fleet {
    trucks: Vec<Truck>,
    rng: Rng,
    step: i64,
}

const FLEETS: [&str; 5] = ["East", "West", "North", "South", "Central"];
const MODELS: [&str; 5] = ["F-150", "G-2000", "H-2", "F-250", "G-3000"];
const DRIVERS: [&str; 8] = [
    "Albert", "Derek", "Trish", "Rodney", "Andy", "Seth", "Shelby", "Zack",
];

impl Fleet {
    /// `trucks` trucks, deterministic for `seed`.
    pub fn new(trucks: usize, seed: u64) -> Fleet {
        let mut rng = Rng::new(seed);
        let trucks = (0..trucks)
            .map(|i| {
                let pick = |r: &mut Rng, n: usize| (r.next_u64() % n as u64) as usize;
                let tags = vec![
                    ("device_id", format!("truck_{i}")),
                    ("name", format!("truck_{i}")),
                    ("fleet", FLEETS[pick(&mut rng, 5)].to_string()),
                    ("driver", DRIVERS[pick(&mut rng, 8)].to_string()),
                    ("model", MODELS[pick(&mut rng, 5)].to_string()),
                    (
                        "device_version",
                        format!("v{}.{}", 1 + pick(&mut rng, 3), pick(&mut rng, 10)),
                    ),
                    (
                        "load_capacity",
                        format!("{}", 1500 + 500 * pick(&mut rng, 4)),
                    ),
                    ("fuel_capacity", format!("{}", 100 + 50 * pick(&mut rng, 4))),
                    (
                        "nominal_fuel_consumption",
                        format!("{}", 10 + 5 * pick(&mut rng, 4)),
                    ),
                ];
                let state = [
                    round(30.0 + 20.0 * rng.unit(), 5),
                    round(-120.0 + 40.0 * rng.unit(), 5),
                    round(500.0 * rng.unit(), 1),
                    round(60.0 * rng.unit(), 1),
                    round(360.0 * rng.unit(), 1),
                    round(10.0 * rng.unit(), 1),
                    round(5.0 + 20.0 * rng.unit(), 2),
                ];
                Truck { tags, state }
            })
            .collect();
        Fleet {
            trucks,
            rng,
            step: 0,
        }
    }

    /// Number of trucks.
    pub fn len(&self) -> usize {
        self.trucks.len()
    }

    /// True for an empty fleet.
    pub fn is_empty(&self) -> bool {
        self.trucks.is_empty()
    }

    /// Appends `rows` consecutive readings of truck `i` (advancing its random walk) to `batch`.
    pub fn readings(&mut self, i: usize, rows: usize, batch: &mut WriteBatch) {
        let Some(truck) = self.trucks.get_mut(i) else {
            return;
        };
        let tags: Vec<(&str, &str)> = truck.tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let s = batch.series("readings", &tags);
        let limits = [
            (-90.0, 90.0),
            (-180.0, 180.0),
            (0.0, 5000.0),
            (0.0, 100.0),
            (0.0, 360.0),
            (0.0, 100.0),
            (0.0, 50.0),
        ];
        let steps = [0.0005, 0.0005, 2.0, 3.0, 15.0, 1.0, 0.5];
        let decimals = [5, 5, 1, 1, 1, 1, 2];
        for r in 0..rows {
            let t = START_NS + (self.step + r as i64) * INTERVAL_NS;
            let mut w = batch.row(s, t);
            for (k, name) in FIELDS.iter().enumerate() {
                let v = truck.state[k] + (self.rng.unit() - 0.5) * 2.0 * steps[k];
                let v = round(v.clamp(limits[k].0, limits[k].1), decimals[k]);
                truck.state[k] = v;
                w.f64(name, v);
            }
        }
    }

    /// Moves the fleet's clock on by `rows` intervals (after every truck got its rows).
    pub fn advance(&mut self, rows: usize) {
        self.step += rows as i64;
    }
}
