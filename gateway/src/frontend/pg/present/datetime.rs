//! Dates and timestamps in text as PostgreSQL's ISO `DateStyle` writes
//! them, where pgwire's chrono-based text differs:
//! - `timestamptz` in the session's zone with the offset's minutes (and
//!   seconds, for the local mean time of old dates) kept — pgwire 0.41
//!   writes hours only, which moves the instant in half-hour zones;
//! - years before 1 as `0045-03-15 BC` (chrono: `-0044-03-15`, which no
//!   client parses) and years past 9999 without chrono's `+`.
//!
//! - zone-less timestamps without trailing fraction zeros (pgwire always
//!   writes six digits), so every such text column is rewritten here;
//!   dates only when a batch holds a year outside 1..=9999, the common case
//!   keeping arrow-pg's encoder.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{Datelike, NaiveDateTime, Offset, Timelike};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::{cast, max, min};
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::arrow::error::ArrowError;
use pgwire::error::{PgWireError, PgWireResult};

/// Days from 1970-01-01 to 0001-01-01 and to 10000-01-01.
const FIRST_ISO_DAY: i64 = -719_162;
const PAST_ISO_DAY: i64 = 2_932_897;

fn err(e: ArrowError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

/// Whether `array` (a date or a timestamp without zone) holds a year that
/// chrono and PostgreSQL write differently. Runs on every such text batch,
/// so it reads the smallest and largest value as integers (a zero-copy
/// reinterpretation) instead of converting the column.
pub(super) fn outside_iso_years(array: &ArrayRef) -> PgWireResult<bool> {
    let per_day: i64 = match array.data_type() {
        DataType::Date32 => 1,
        DataType::Date64 => 86_400_000,
        DataType::Timestamp(unit, None) => match unit {
            TimeUnit::Second => 86_400,
            TimeUnit::Millisecond => 86_400_000,
            TimeUnit::Microsecond => 86_400_000_000,
            TimeUnit::Nanosecond => 86_400_000_000_000,
        },
        _ => return Ok(false),
    };
    let (lo, hi) = if per_day == 1 {
        let days = cast(array, &DataType::Int32).map_err(err)?;
        let days = days.as_primitive::<Int32Type>();
        (min(days).map(i64::from), max(days).map(i64::from))
    } else {
        let values = cast(array, &DataType::Int64).map_err(err)?;
        let values = values.as_primitive::<Int64Type>();
        (min(values), max(values))
    };
    let day = |v: Option<i64>| v.map(|v| v.div_euclid(per_day));
    Ok(day(lo).is_some_and(|d| d < FIRST_ISO_DAY) || day(hi).is_some_and(|d| d >= PAST_ISO_DAY))
}

/// A date or zone-less timestamp column written as text.
pub(super) fn datetime_text(array: &ArrayRef) -> PgWireResult<ArrayRef> {
    let with_time = matches!(array.data_type(), DataType::Timestamp(..));
    let micros = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None)).map_err(err)?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 22);
    for i in 0..micros.len() {
        match (!micros.is_null(i)).then(|| micros.value_as_datetime(i)).flatten() {
            Some(dt) => out.append_value(iso(&dt, with_time, None)),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `timestamptz` text in `zone`: fraction only when there is one
/// (trailing zeros dropped), offset minutes and seconds only when not zero.
pub(super) fn timestamptz_text(array: &ArrayRef, zone: &str) -> PgWireResult<ArrayRef> {
    let tz = Tz::from_str(zone).map_err(err)?;
    let micros = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, Some(zone.into()))).map_err(err)?;
    let micros = micros.as_primitive::<TimestampMicrosecondType>();
    let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 26);
    for i in 0..micros.len() {
        match (!micros.is_null(i))
            .then(|| micros.value_as_datetime_with_tz(i, tz))
            .flatten()
        {
            Some(dt) => {
                let offset = dt.offset().fix().local_minus_utc();
                out.append_value(iso(&dt.naive_local(), true, Some(offset)));
            }
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// One value in ISO style: `YYYY-MM-DD[ HH:MM:SS[.ffffff]][±HH[:MM[:SS]]][ BC]`.
fn iso(dt: &NaiveDateTime, with_time: bool, offset_secs: Option<i32>) -> String {
    use std::fmt::Write;
    let year = dt.year();
    let (shown_year, bc) = if year <= 0 { (1 - year, true) } else { (year, false) };
    let mut text = format!("{shown_year:04}-{:02}-{:02}", dt.month(), dt.day());
    if with_time {
        let _ = write!(text, " {:02}:{:02}:{:02}", dt.hour(), dt.minute(), dt.second());
        let frac = dt.nanosecond() / 1000;
        if frac != 0 {
            let f = format!(".{frac:06}");
            text.push_str(f.trim_end_matches('0'));
        }
    }
    if let Some(offset) = offset_secs {
        let (sign, abs) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
        let _ = write!(text, "{sign}{:02}", abs / 3600);
        if abs % 3600 != 0 {
            let _ = write!(text, ":{:02}", abs % 3600 / 60);
        }
        if abs % 60 != 0 {
            let _ = write!(text, ":{:02}", abs % 60);
        }
    }
    if bc {
        text.push_str(" BC");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, TimestampMicrosecondArray};

    fn texts(array: ArrayRef) -> Vec<Option<String>> {
        array.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn years_outside_iso_are_written_as_postgresql_does() {
        // 0001-12-31 BC is astronomical year 0; 0045-03-15 BC is -44.
        let day = |y, m, d| {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
            (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
        };
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(day(0, 12, 31)),
            Some(day(-44, 3, 15)),
            Some(day(12000, 1, 1)),
            None,
            Some(day(2024, 2, 29)),
        ]));
        assert!(outside_iso_years(&dates).unwrap());
        assert_eq!(
            texts(datetime_text(&dates).unwrap()),
            vec![
                Some("0001-12-31 BC".into()),
                Some("0045-03-15 BC".into()),
                Some("12000-01-01".into()),
                None,
                Some("2024-02-29".into())
            ]
        );
        let modern: ArrayRef = Arc::new(Date32Array::from(vec![Some(day(1, 1, 1)), Some(day(9999, 12, 31))]));
        assert!(!outside_iso_years(&modern).unwrap());

        let micros = i64::from(day(0, 12, 31)) * 86_400_000_000 + 3_600_000_000 + 500_000;
        let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![micros]));
        assert!(outside_iso_years(&ts).unwrap());
        assert_eq!(
            texts(datetime_text(&ts).unwrap()),
            vec![Some("0001-12-31 01:00:00.5 BC".into())]
        );
        let tz: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone("+00:00"));
        assert_eq!(
            texts(timestamptz_text(&tz, "+05:30").unwrap()),
            vec![Some("0001-12-31 06:30:00.5+05:30 BC".into())]
        );
    }

    #[test]
    fn local_mean_time_offsets_keep_their_seconds() {
        // Brussels kept local mean time (+00:17:30) until 1892; tzdata
        // links Amsterdam to it.
        let micros = -3_000_000_000_i64 * 1_000_000;
        let tz: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![micros]).with_timezone("+00:00"));
        let text = texts(timestamptz_text(&tz, "Europe/Amsterdam").unwrap());
        assert_eq!(text, vec![Some("1874-12-07 18:57:30+00:17:30".into())]);
    }
}
