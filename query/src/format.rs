//! Streaming result encoders: each batch is encoded as it arrives, so a large result never sits
//! whole in memory.
//!
//! | format | content type | shape |
//! |---|---|---|
//! | `json` | `application/json` | one array of objects, nulls explicit |
//! | `jsonl` | `application/x-ndjson` | one object per line |
//! | `csv` | `text/csv` | header line, then rows (RFC 4180 quoting) |
//! | `arrow` | `application/vnd.apache.arrow.stream` | Arrow IPC stream |
//! | `parquet` | `application/vnd.apache.parquet` | one Parquet file (zstd), a row group per ~64 MiB |
//!
//! Timestamps are RFC 3339 in text formats (`2026-01-01T00:00:00Z`, fractions when non-zero);
//! floats that JSON cannot hold (NaN, ±inf) become `null` in JSON.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Bytes of buffered rows after which the Parquet encoder cuts a row group.
const PARQUET_ROW_GROUP_BYTES: usize = 64 << 20;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of objects.
    Json,
    /// Newline-delimited JSON objects.
    Jsonl,
    /// CSV with a header.
    Csv,
    /// Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl Format {
    /// Every format, for messages.
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Jsonl,
        Format::Csv,
        Format::Arrow,
        Format::Parquet,
    ];

    /// By its name (`format=` parameter).
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "jsonl" | "ndjson" | "jsonlines" => Format::Jsonl,
            "csv" => Format::Csv,
            "arrow" | "ipc" | "arrows" => Format::Arrow,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// The first format an `Accept` header names (in order of preference), if any.
    pub fn from_accept(accept: &str) -> Option<Format> {
        let mut ranges: Vec<(f32, usize, &str)> = accept
            .split(',')
            .enumerate()
            .map(|(i, part)| {
                let mut it = part.split(';');
                let mime = it.next().unwrap_or("").trim();
                let q = it
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q, i, mime)
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges.iter().find_map(|(q, _, mime)| {
            if *q <= 0.0 {
                return None;
            }
            Some(match mime.to_ascii_lowercase().as_str() {
                "application/json" => Format::Json,
                "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
                    Format::Jsonl
                }
                "text/csv" => Format::Csv,
                "application/vnd.apache.arrow.stream" | "application/vnd.apache.arrow" => {
                    Format::Arrow
                }
                "application/vnd.apache.parquet" | "application/parquet" => Format::Parquet,
                _ => return None,
            })
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Arrow => "arrow",
            Format::Parquet => "parquet",
        }
    }

    /// Why this format cannot carry a result of `schema`, if it cannot (CSV has no nested
    /// values).
    pub fn unsupported(self, schema: &Schema) -> Option<String> {
        if self != Format::Csv {
            return None;
        }
        let f = schema.fields().iter().find(|f| f.data_type().is_nested())?;
        Some(format!(
            "CSV cannot hold the nested column {} ({}); use json, jsonl, arrow or parquet",
            f.name(),
            f.data_type()
        ))
    }

    /// Its HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Encodes one result, batch by batch.
pub struct Encoder {
    state: State,
    schema: SchemaRef,
    rows: u64,
}

enum State {
    Json { first: bool },
    Jsonl,
    Csv { header: bool },
    Arrow(Box<StreamWriter<Vec<u8>>>),
    Parquet(Box<ArrowWriter<Vec<u8>>>),
    Done,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("rows", &self.rows).finish()
    }
}

/// Text formats write tags (dictionaries) as their values; binary formats keep them.
fn text_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, v) => f.as_ref().clone().with_data_type(v.as_ref().clone()),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

impl Encoder {
    /// An encoder for results of `schema`; returns it and the bytes that open the output.
    pub fn new(format: Format, schema: SchemaRef) -> Result<(Encoder, Vec<u8>), ArrowError> {
        let mut head = Vec::new();
        let state = match format {
            Format::Json => State::Json { first: true },
            Format::Jsonl => State::Jsonl,
            Format::Csv => State::Csv { header: true },
            Format::Arrow => {
                let mut w = StreamWriter::try_new(Vec::new(), &schema)?;
                head = std::mem::take(w.get_mut());
                State::Arrow(Box::new(w))
            }
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(1 << 20))
                    .build();
                let w = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props))
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                State::Parquet(Box::new(w))
            }
        };
        if format == Format::Json {
            head.push(b'[');
        }
        Ok((
            Encoder {
                state,
                schema,
                rows: 0,
            },
            head,
        ))
    }

    /// Rows encoded so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Encodes one batch; returns the bytes ready to send (possibly none yet).
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        self.rows += batch.num_rows() as u64;
        let mut out = Vec::new();
        match &mut self.state {
            State::Json { first } => {
                let text = text_batch(batch)?;
                let lines = json_lines(&text)?;
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if !*first {
                        out.push(b',');
                    }
                    *first = false;
                    out.extend_from_slice(line);
                }
            }
            State::Jsonl => {
                let text = text_batch(batch)?;
                out = json_lines(&text)?;
            }
            State::Csv { header } => {
                let text = text_batch(batch)?;
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .with_timestamp_tz_format(TS_FORMAT.to_string())
                    .build(&mut out);
                w.write(&text)?;
                drop(w);
                *header = false;
            }
            State::Arrow(w) => {
                w.write(batch)?;
                out = std::mem::take(w.get_mut());
            }
            State::Parquet(w) => {
                w.write(batch)
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                if w.in_progress_size() >= PARQUET_ROW_GROUP_BYTES {
                    w.flush()
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                }
                out = std::mem::take(w.inner_mut());
            }
            State::Done => {}
        }
        Ok(out)
    }

    /// Closes the output; returns its last bytes.
    pub fn finish(&mut self) -> Result<Vec<u8>, ArrowError> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.state, State::Done) {
            State::Json { .. } => out.push(b']'),
            State::Jsonl | State::Done => {}
            State::Csv { header } => {
                if header {
                    // No rows: still name the columns.
                    let empty = RecordBatch::new_empty(text_schema(&self.schema));
                    let mut w = datafusion::arrow::csv::WriterBuilder::new()
                        .with_header(true)
                        .build(&mut out);
                    w.write(&empty)?;
                }
            }
            State::Arrow(mut w) => {
                w.finish()?;
                out = std::mem::take(w.get_mut());
            }
            State::Parquet(mut w) => {
                w.finish()
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                out = std::mem::take(w.inner_mut());
            }
        }
        if matches!(out.last(), Some(b']')) {
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// The batch with tags as plain strings, for the text formats.
fn text_batch(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(..)))
    {
        return Ok(batch.clone());
    }
    let schema = text_schema(&batch.schema());
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, cols)
}

/// RFC 3339 in UTC with as many fraction digits as needed.
const TS_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.fZ";

fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    let mut w = datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .with_timestamp_tz_format(TS_FORMAT.to_string())
        .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut out);
    w.write(batch)?;
    w.finish()?;
    drop(w);
    Ok(out)
}
