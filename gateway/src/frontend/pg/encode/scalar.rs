//! Single values in PostgreSQL's text and binary forms, written straight
//! into the output buffer: `numeric` from an Arrow decimal (any precision
//! up to 38 digits, scale kept, as `numeric_out` / `numeric_send` write
//! it), `date` in ISO form and as days since 2000-01-01, timestamps as
//! microseconds since 2000-01-01, `bytea` in hex.

use bytes::{BufMut, BytesMut};

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i128 = PG_EPOCH_DAYS as i128 * 86_400_000_000;

/// `numeric_out`: the digits of `value / 10^scale` with exactly `scale`
/// fraction digits (`-0.05`, `12.30`, `0.00`).
pub(super) fn numeric_text(value: i128, scale: u32, out: &mut BytesMut) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value.unsigned_abs()).as_bytes();
    if value < 0 {
        out.put_u8(b'-');
    }
    let scale = scale as usize;
    if scale == 0 {
        out.put_slice(digits);
        return;
    }
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.put_slice(int);
        out.put_u8(b'.');
        out.put_slice(frac);
    } else {
        out.put_slice(b"0.");
        out.put_bytes(b'0', scale - digits.len());
        out.put_slice(digits);
    }
}

/// `numeric_send`: digit count, weight (of the first base-10000 digit),
/// sign, display scale, then the base-10000 digits without leading or
/// trailing zero digits. Zero is no digits, weight 0, its scale kept.
pub(super) fn numeric_binary(value: i128, scale: u32, out: &mut BytesMut) {
    // Base-10000 digits, least significant first: the fraction's (its
    // lowest group padded on the right to four decimal digits), then the
    // integer part's.
    let mut groups = [0u16; 24];
    let mut n = 0;
    let magnitude = value.unsigned_abs();
    let pow = 10u128.pow(scale);
    let (mut int, mut frac) = (magnitude / pow, magnitude % pow);
    let frac_groups = scale.div_ceil(4) as usize;
    let mut left = scale;
    while left > 0 {
        let width = if left.is_multiple_of(4) { 4 } else { left % 4 };
        let unit = 10u128.pow(width);
        groups[n] = ((frac % unit) * 10u128.pow(4 - width)) as u16;
        frac /= unit;
        left -= width;
        n += 1;
    }
    while int > 0 {
        groups[n] = (int % 10_000) as u16;
        int /= 10_000;
        n += 1;
    }
    // groups[frac_groups..n] is the integer part: its top digit has weight
    // n - frac_groups - 1.
    let mut top = n;
    while top > 0 && groups[top - 1] == 0 {
        top -= 1;
    }
    let mut bottom = 0;
    while bottom < top && groups[bottom] == 0 {
        bottom += 1;
    }
    let ndigits = top - bottom;
    let weight = if ndigits == 0 {
        0
    } else {
        top as i32 - frac_groups as i32 - 1
    };
    out.reserve(8 + 2 * ndigits);
    out.put_i16(ndigits as i16);
    out.put_i16(weight as i16);
    out.put_u16(if value < 0 && ndigits > 0 { 0x4000 } else { 0 });
    out.put_u16(scale as u16);
    for g in groups[bottom..top].iter().rev() {
        out.put_u16(*g);
    }
}

/// The proleptic Gregorian (year, month, day) of a day count from
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A date in ISO form (`YYYY-MM-DD`) when its year is 1 to 9999; `false`
/// (nothing written) otherwise, for the caller's general path.
pub(super) fn date_text(days: i32, out: &mut BytesMut) -> bool {
    let (year, month, day) = civil_from_days(i64::from(days));
    if !(1..=9999).contains(&year) {
        return false;
    }
    let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let y = year as u32;
    out.put_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
    ]);
    out.put_slice(&two(month));
    out.put_u8(b'-');
    out.put_slice(&two(day));
    true
}

/// `date_send`: days since 2000-01-01.
pub(super) fn date_binary(days: i32, out: &mut BytesMut) {
    out.put_i32((i64::from(days) - PG_EPOCH_DAYS) as i32);
}

/// `timestamp_send`: microseconds since 2000-01-01, from a count of
/// `per_second` units since 1970 (truncated toward zero, as chrono's
/// `num_microseconds` does); `false` when it does not fit.
pub(super) fn timestamp_binary(value: i64, per_second: i64, out: &mut BytesMut) -> bool {
    let v = i128::from(value);
    let micros = match per_second {
        1 => v * 1_000_000 - PG_EPOCH_MICROS,
        1_000 => v * 1_000 - PG_EPOCH_MICROS,
        1_000_000 => v - PG_EPOCH_MICROS,
        _ => (v - PG_EPOCH_MICROS * 1_000) / 1_000,
    };
    match i64::try_from(micros) {
        Ok(m) => {
            out.put_i64(m);
            true
        }
        Err(_) => false,
    }
}

/// `byteaout` with `bytea_output = hex`: `\x` and two lowercase hex
/// digits a byte.
pub(super) fn bytea_hex(value: &[u8], out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + 2 * value.len());
    out.put_slice(b"\\x");
    for b in value {
        out.put_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: i128, scale: u32) -> String {
        let mut out = BytesMut::new();
        numeric_text(value, scale, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    /// (ndigits, weight, sign, dscale, digits)
    fn binary(value: i128, scale: u32) -> (i16, i16, u16, u16, Vec<u16>) {
        let mut out = BytesMut::new();
        numeric_binary(value, scale, &mut out);
        let b = out.to_vec();
        let word = |i: usize| u16::from_be_bytes([b[2 * i], b[2 * i + 1]]);
        let n = word(0) as i16;
        assert_eq!(b.len(), 8 + 2 * n as usize);
        (
            n,
            word(1) as i16,
            word(2),
            word(3),
            (0..n as usize).map(|i| word(4 + i)).collect(),
        )
    }

    #[test]
    fn numeric_text_keeps_the_scale() {
        assert_eq!(text(1230, 2), "12.30");
        assert_eq!(text(-5, 2), "-0.05");
        assert_eq!(text(0, 2), "0.00");
        assert_eq!(text(0, 0), "0");
        assert_eq!(text(-42, 0), "-42");
        assert_eq!(text(1, 38), format!("0.{}1", "0".repeat(37)));
        assert_eq!(text(i128::MAX, 0), i128::MAX.to_string());
        assert_eq!(
            text(-99_999_999_999_999_999_999_999_999_999_999_999_999, 10),
            "-9999999999999999999999999999.9999999999"
        );
    }

    /// What PostgreSQL 15's `numeric_send` writes for the same values.
    #[test]
    fn numeric_binary_is_numeric_send() {
        assert_eq!(binary(1230, 2), (2, 0, 0, 2, vec![12, 3000]));
        assert_eq!(binary(-5, 2), (1, -1, 0x4000, 2, vec![500]));
        assert_eq!(binary(0, 3), (0, 0, 0, 3, vec![]));
        assert_eq!(binary(100_000, 0), (1, 1, 0, 0, vec![10]));
        assert_eq!(binary(1234, 7), (2, -1, 0, 7, vec![1, 2340]));
        assert_eq!(binary(1, 5), (1, -2, 0, 5, vec![1000]));
        assert_eq!(binary(123_456_789, 4), (3, 1, 0, 4, vec![1, 2345, 6789]));
        let max = binary(i128::MAX, 0);
        assert_eq!(max.1, 9);
        assert_eq!(max.0, 10);
        let deep = binary(10_i128.pow(38) - 1, 38);
        assert_eq!((deep.0, deep.1, deep.3), (10, -1, 38));
        assert_eq!(deep.4.last(), Some(&9900));
    }

    #[test]
    fn dates_in_iso_and_since_2000() {
        let t = |d: i32| {
            let mut out = BytesMut::new();
            date_text(d, &mut out).then(|| String::from_utf8(out.to_vec()).unwrap())
        };
        assert_eq!(t(0).as_deref(), Some("1970-01-01"));
        assert_eq!(t(10_957).as_deref(), Some("2000-01-01"));
        assert_eq!(t(-1).as_deref(), Some("1969-12-31"));
        assert_eq!(t(19_782).as_deref(), Some("2024-02-29"));
        assert_eq!(t(-719_162).as_deref(), Some("0001-01-01"));
        assert_eq!(t(2_932_896).as_deref(), Some("9999-12-31"));
        assert_eq!(t(-719_163), None);
        assert_eq!(t(2_932_897), None);
        let mut out = BytesMut::new();
        date_binary(10_958, &mut out);
        assert_eq!(out.as_ref(), 1i32.to_be_bytes());
    }

    #[test]
    fn timestamps_are_micros_since_2000_truncated_toward_zero() {
        let micros = |v: i64, per_second: i64| {
            let mut out = BytesMut::new();
            timestamp_binary(v, per_second, &mut out).then(|| i64::from_be_bytes(out.as_ref().try_into().unwrap()))
        };
        assert_eq!(micros(946_684_800, 1), Some(0));
        assert_eq!(micros(946_684_800_001, 1_000), Some(1_000));
        assert_eq!(micros(946_684_800_000_000 - 1, 1_000_000), Some(-1));
        assert_eq!(micros(946_684_800_000_000_000 - 1_500, 1_000_000_000), Some(-1));
        assert_eq!(micros(946_684_800_000_001_999, 1_000_000_000), Some(1));
        assert_eq!(micros(i64::MAX, 1), None);
    }

    #[test]
    fn bytea_in_hex() {
        let mut out = BytesMut::new();
        bytea_hex(&[0, 0xab, 0x7f], &mut out);
        assert_eq!(out.as_ref(), b"\\x00ab7f");
    }
}
