//! A TSBS-IoT-like truck fleet, as a pure generator (no IO): each truck has fixed tags and two
//! tables of random-walk values, one row of each per interval, optionally made dirty.
//!
//! - Tags (TSBS's lists): `name` (`truck_{i}`), `fleet`, `driver`, `model`, `device_version`,
//!   and the model's `load_capacity`, `fuel_capacity` and `nominal_fuel_consumption`.
//! - `readings`: `latitude`, `longitude` (5 decimals), `elevation`, `velocity`, `heading`,
//!   `grade` (whole numbers), `fuel_consumption` (1 decimal); all floats.
//! - `diagnostics`: `fuel_state` (0..1, 3 decimals), `current_load` (0..load capacity), both
//!   floats, and `status` (0..5, an integer).
//!
//! Trucks drive and stop: a stopped truck reports velocity 0 for a stretch of intervals, does not
//! move, may load or unload, and refuels when low; a driving one wanders in position, heading,
//! elevation and speed and burns fuel (refilled when it runs dry). Values are fixed-point decimals
//! held as integers, so they print exactly and the same seed gives the same bytes everywhere.
//!
//! Every truck draws from its own streams (values, dirt, tags) keyed by `(seed, index)`: a
//! truck's data does not depend on the fleet size, the batch size, the thread that runs it, or on
//! `dirty` (dirt draws from its own stream).
//!
//! Dirty data (`dirty` = probability per row, TSBS-style): a row loses one field, or has one
//! field zeroed, or is held back and sent one to three messages later (out of order). Every row is
//! sent exactly once, so the rows a run stores are the same whatever the batch size.

mod encode;
mod rng;
mod time;

pub use time::{parse_duration, parse_time};

use rng::{Chance, Rng};

/// The two tables a truck writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Position and motion.
    Readings,
    /// Fuel, load and status.
    Diagnostics,
}

impl Table {
    /// Both tables, in the order a batch holds them.
    pub const ALL: [Table; 2] = [Table::Readings, Table::Diagnostics];

    /// The table's name (also the line-protocol measurement and the topic's last level).
    pub fn name(self) -> &'static str {
        match self {
            Table::Readings => "readings",
            Table::Diagnostics => "diagnostics",
        }
    }

    /// The field names, in the order rows carry them.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Table::Readings => &READINGS_FIELDS,
            Table::Diagnostics => &DIAGNOSTICS_FIELDS,
        }
    }

    fn index(self) -> usize {
        match self {
            Table::Readings => 0,
            Table::Diagnostics => 1,
        }
    }
}

/// The fields of `readings`.
pub const READINGS_FIELDS: [&str; 7] = [
    "latitude",
    "longitude",
    "elevation",
    "velocity",
    "heading",
    "grade",
    "fuel_consumption",
];

/// The fields of `diagnostics`.
pub const DIAGNOSTICS_FIELDS: [&str; 3] = ["fuel_state", "current_load", "status"];

/// How a payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// InfluxDB line protocol: one line per row, the truck's tags on every line, ns timestamps.
    Line,
    /// Mast JSON (`{"ts": ms, "values": {...}}`, an array for several rows): no tags but the
    /// device id the topic carries; `status` becomes a float, as JSON numbers are.
    Json,
    /// Mast JSON with the truck's tags as string values in every row (`"name": "truck_7",
    /// "fleet": "West", …`), as a device that knows nothing of tags sends them.
    JsonTags,
}

impl Format {
    /// Whether payloads are JSON (whole-millisecond timestamps).
    pub fn is_json(self) -> bool {
        matches!(self, Format::Json | Format::JsonTags)
    }
}

/// One field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A float sent with exactly `scale` decimals: `units / 10^scale`.
    Decimal {
        /// The value times 10^scale.
        units: i64,
        /// Decimal places (at most 5).
        scale: u8,
    },
    /// An integer (`i` suffix in line protocol).
    Int(i64),
}

impl Value {
    /// The value as the server stores a float (correctly rounded, as parsing the text is).
    pub fn as_f64(self) -> f64 {
        const POW10: [f64; 6] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5];
        match self {
            Value::Decimal { units, scale } => units as f64 / POW10[usize::from(scale.min(5))],
            Value::Int(v) => v as f64,
        }
    }

    /// The same kind of value, zero.
    fn zero(self) -> Value {
        match self {
            Value::Decimal { scale, .. } => Value::Decimal { units: 0, scale },
            Value::Int(_) => Value::Int(0),
        }
    }
}

/// One row: a table, a timestamp and its fields (`None` = left out of the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The table.
    pub table: Table,
    /// Nanoseconds since the epoch.
    pub ts_ns: i64,
    values: [Option<Value>; 7],
}

impl Row {
    /// The fields present, by name, in the table's order.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, Value)> + '_ {
        self.table
            .fields()
            .iter()
            .zip(self.values.iter())
            .filter_map(|(n, v)| v.map(|v| (*n, v)))
    }

    /// The field `name`, if present.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// How many fields (points) the row carries.
    pub fn points(&self) -> usize {
        self.values.iter().filter(|v| v.is_some()).count()
    }
}

/// The `fleet` tag values.
pub(crate) const FLEETS: [&str; 4] = ["East", "West", "North", "South"];
const DRIVERS: [&str; 6] = ["Derek", "Rodney", "Albert", "Andy", "Seth", "Trish"];
const DEVICE_VERSIONS: [&str; 4] = ["v1.0", "v1.5", "v2.0", "v2.3"];
/// Model, load capacity (kg), fuel capacity (l), nominal fuel consumption (l/100 km).
const MODELS: [(&str, u32, u32, u32); 3] = [
    ("F-150", 2000, 200, 15),
    ("G-2000", 5000, 300, 19),
    ("H-2", 1500, 150, 12),
];

/// A truck's tags (line protocol carries them as strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    /// `truck_{i}`, also the device id and MQTT client id.
    pub name: String,
    /// East, West, North or South.
    pub fleet: &'static str,
    /// The driver's first name.
    pub driver: &'static str,
    /// F-150, G-2000 or H-2.
    pub model: &'static str,
    /// Firmware of the truck's device.
    pub device_version: &'static str,
    /// kg.
    pub load_capacity: u32,
    /// Litres.
    pub fuel_capacity: u32,
    /// l/100 km.
    pub nominal_fuel_consumption: u32,
}

impl Tags {
    fn draw(index: u64, rng: &mut Rng) -> Tags {
        let (model, load, fuel, nominal) = rng.pick(&MODELS);
        Tags {
            name: format!("truck_{index}"),
            fleet: rng.pick(&FLEETS),
            driver: rng.pick(&DRIVERS),
            model,
            device_version: rng.pick(&DEVICE_VERSIONS),
            load_capacity: load,
            fuel_capacity: fuel,
            nominal_fuel_consumption: nominal,
        }
    }

    /// (key, value) pairs in the order payloads carry them.
    pub fn pairs(&self) -> [(&'static str, String); 8] {
        [
            ("name", self.name.clone()),
            ("fleet", self.fleet.to_owned()),
            ("driver", self.driver.to_owned()),
            ("model", self.model.to_owned()),
            ("device_version", self.device_version.to_owned()),
            ("load_capacity", self.load_capacity.to_string()),
            ("fuel_capacity", self.fuel_capacity.to_string()),
            (
                "nominal_fuel_consumption",
                self.nominal_fuel_consumption.to_string(),
            ),
        ]
    }
}

/// The random-walk state, in fixed-point units.
#[derive(Debug, Clone)]
struct State {
    /// 1e-5 degrees.
    lat: i64,
    /// 1e-5 degrees.
    lon: i64,
    /// m.
    elevation: i64,
    /// km/h.
    velocity: i64,
    /// Degrees, 0..360.
    heading: i64,
    /// Percent.
    grade: i64,
    /// 0.1 l/100 km while driving.
    consumption: i64,
    /// 1e-3 of a full tank.
    fuel: i64,
    /// kg.
    load: i64,
    /// 0..=5.
    status: i64,
    /// Intervals left standing still.
    stopped_for: u32,
}

const STOP_CHANCE: f64 = 0.02;
const LOAD_CHANGE_CHANCE: f64 = 0.1;
const STATUS_CHANGE_CHANCE: f64 = 0.1;

/// Stream numbers of a truck's random sources.
const VALUES: u64 = 0;
const DIRT: u64 = 1;
const TAGS: u64 = 2;

/// One simulated truck. Feed it timestamps with [`Truck::next_batch`]; write what it returns
/// with [`Truck::encode`]; call [`Truck::drain`] at the end for rows still held back.
#[derive(Debug, Clone)]
pub struct Truck {
    index: u64,
    tags: Tags,
    state: State,
    values: Rng,
    dirt: Rng,
    dirty: Chance,
    odds: [Chance; 3],
    /// Rows held back (out of order) per table, with the messages they still wait.
    held: [Vec<(Row, u32)>; 2],
    /// Line-protocol `measurement,tags ` per table.
    prefixes: [String; 2],
}

/// The rows of one batch, per table, in the order they are to be sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    rows: [Vec<Row>; 2],
}

impl Batch {
    /// The rows of `table` (may be empty: all held back).
    pub fn rows(&self, table: Table) -> &[Row] {
        &self.rows[table.index()]
    }
}

impl Truck {
    /// Truck `index` of the fleet under `seed`; `dirty` is the probability (0..=1) that a row
    /// is made dirty.
    pub fn new(seed: u64, index: u64, dirty: f64) -> Truck {
        let tags = Tags::draw(index, &mut Rng::new(seed, index, TAGS));
        let mut values = Rng::new(seed, index, VALUES);
        let state = State {
            lat: values.range(-6_000_000, 7_000_000),
            lon: values.range(-18_000_000, 17_999_999),
            elevation: values.range(0, 500),
            velocity: 0,
            heading: values.range(0, 359),
            grade: 0,
            consumption: 250,
            fuel: values.range(500, 1000),
            load: values.range(0, i64::from(tags.load_capacity)),
            status: 0,
            stopped_for: values.range(0, 30) as u32,
        };
        let prefixes = Table::ALL.map(|t| encode::line_prefix(t, &tags));
        Truck {
            index,
            tags,
            state,
            values,
            dirt: Rng::new(seed, index, DIRT),
            dirty: Chance::new(dirty),
            odds: [
                Chance::new(STOP_CHANCE),
                Chance::new(LOAD_CHANGE_CHANCE),
                Chance::new(STATUS_CHANGE_CHANCE),
            ],
            held: [Vec::new(), Vec::new()],
            prefixes,
        }
    }

    /// The truck's number in the fleet.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Its device id (= MQTT client id = `name` tag).
    pub fn device_id(&self) -> &str {
        &self.tags.name
    }

    /// Its tags.
    pub fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The rows of the next `count` intervals, at `first_ts_ns`, `first_ts_ns + interval_ns`,
    /// ...: per table the rows sent now, then any held-back rows whose time has come.
    pub fn next_batch(&mut self, first_ts_ns: i64, interval_ns: i64, count: usize) -> Batch {
        let mut batch = Batch::default();
        let mut newly_held: [Vec<(Row, u32)>; 2] = [Vec::new(), Vec::new()];
        for k in 0..count {
            let ts = first_ts_ns.saturating_add(interval_ns.saturating_mul(k as i64));
            for row in self.tick(ts) {
                let t = row.table.index();
                match self.soil(row) {
                    Soiled::Send(r) => batch.rows[t].push(r),
                    Soiled::Hold(r, messages) => newly_held[t].push((r, messages)),
                }
            }
        }
        // Held rows count down one message per batch; those due go after this batch's rows.
        for ((held, fresh), out) in self
            .held
            .iter_mut()
            .zip(newly_held.iter_mut())
            .zip(batch.rows.iter_mut())
        {
            if count > 0 {
                for (row, wait) in std::mem::take(held) {
                    if wait <= 1 {
                        out.push(row);
                    } else {
                        held.push((row, wait - 1));
                    }
                }
            }
            held.append(fresh);
        }
        batch
    }

    /// Every row still held back (the end of a run).
    pub fn drain(&mut self) -> Batch {
        let mut batch = Batch::default();
        for (out, held) in batch.rows.iter_mut().zip(self.held.iter_mut()) {
            *out = held.drain(..).map(|(r, _)| r).collect();
        }
        batch
    }

    /// Every row this truck sends over `ticks` intervals from `first_ts_ns`, in batches of
    /// `batch`, held-back rows included, in send order (readings then diagnostics per batch):
    /// what a fast-forward run of `mast-loadgen iot` publishes for it.
    pub fn history(
        &mut self,
        first_ts_ns: i64,
        interval_ns: i64,
        ticks: usize,
        batch: usize,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut n = 0;
        while n < ticks {
            let k = batch.max(1).min(ticks - n);
            let b = self.next_batch(first_ts_ns + n as i64 * interval_ns, interval_ns, k);
            for table in Table::ALL {
                rows.extend_from_slice(b.rows(table));
            }
            n += k;
        }
        let b = self.drain();
        for table in Table::ALL {
            rows.extend_from_slice(b.rows(table));
        }
        rows
    }

    /// Writes `rows` (of one table) as one payload in `format`, appending to `out`.
    pub fn encode(&self, format: Format, rows: &[Row], out: &mut String) {
        encode::rows(format, &self.prefixes, &self.tags, rows, out);
    }

    /// The clean rows of one interval (readings, diagnostics), then one step of the walk.
    fn tick(&mut self, ts_ns: i64) -> [Row; 2] {
        let s = &self.state;
        let dec = |units, scale| Some(Value::Decimal { units, scale });
        let driving = s.velocity > 0;
        let readings = Row {
            table: Table::Readings,
            ts_ns,
            values: [
                dec(s.lat, 5),
                dec(s.lon, 5),
                dec(s.elevation, 0),
                dec(s.velocity, 0),
                dec(s.heading, 0),
                dec(s.grade, 0),
                dec(if driving { s.consumption } else { 0 }, 1),
            ],
        };
        let diagnostics = Row {
            table: Table::Diagnostics,
            ts_ns,
            values: [
                dec(s.fuel, 3),
                dec(s.load, 0),
                Some(Value::Int(s.status)),
                None,
                None,
                None,
                None,
            ],
        };
        self.step();
        [readings, diagnostics]
    }

    fn step(&mut self) {
        let [stop, load_change, status_change] = self.odds;
        let r = &mut self.values;
        let s = &mut self.state;
        if s.stopped_for > 0 {
            s.stopped_for -= 1;
            s.velocity = 0;
            if r.chance(load_change) {
                s.load = r.range(0, i64::from(self.tags.load_capacity));
            }
            if s.fuel < 250 {
                s.fuel = 1000;
            }
        } else {
            // Pulling away speeds up; on the road speed wanders. Only a stop brings it to 0.
            let dv = if s.velocity < 20 {
                r.range(0, 10)
            } else {
                r.range(-10, 10)
            };
            s.velocity = (s.velocity + dv).clamp(1, 100);
            let reach = s.velocity * 5;
            s.lat = (s.lat + r.range(-reach, reach)).clamp(-9_000_000, 9_000_000);
            s.lon = (s.lon + r.range(-reach, reach)).clamp(-18_000_000, 18_000_000);
            s.heading = (s.heading + r.range(-5, 5)).rem_euclid(360);
            s.elevation = (s.elevation + r.range(-10, 10)).clamp(0, 5000);
            s.grade = (s.grade + r.range(-5, 5)).clamp(0, 100);
            s.consumption = (s.consumption + r.range(-50, 50)).clamp(0, 500);
            s.fuel -= r.range(0, 2);
            if s.fuel <= 0 {
                s.fuel = 1000;
            }
            if r.chance(stop) {
                s.stopped_for = r.range(6, 60) as u32;
                s.velocity = 0;
            }
        }
        if r.chance(status_change) {
            s.status = (s.status + r.pick(&[-1, 1])).clamp(0, 5);
        }
    }

    /// Makes `row` dirty with probability `dirty`.
    fn soil(&mut self, mut row: Row) -> Soiled {
        let r = &mut self.dirt;
        // Always the same number of draws per row, so one row's dirt never shifts the next's.
        let hit = r.chance(self.dirty);
        let kind = r.below(3);
        let field = r.below(row.table.fields().len() as u64) as usize;
        let wait = 1 + r.below(3) as u32;
        if !hit {
            return Soiled::Send(row);
        }
        match kind {
            0 => row.values[field] = None,
            1 => row.values[field] = row.values[field].map(Value::zero),
            _ => return Soiled::Hold(row, wait),
        }
        Soiled::Send(row)
    }
}

enum Soiled {
    Send(Row),
    Hold(Row, u32),
}

#[cfg(test)]
mod tests;
