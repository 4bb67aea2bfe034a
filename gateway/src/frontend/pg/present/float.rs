//! `float4` / `float8` text as PostgreSQL writes it with `extra_float_digits`
//! above zero (its default, and what drivers set): the shortest digits that
//! read back to the same value, in fixed notation when the decimal exponent
//! is from -4 up to 14 (float4: 5), else `d.ddde±XX`; `NaN`, `Infinity`,
//! `-Infinity`, `-0`. pgwire writes Rust's forms instead (`100.0`, `1e300`,
//! `inf`), which psql shows differently and COPY files spell differently.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};

/// A float column as PostgreSQL's text.
pub(super) fn float_text(array: &ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Float32 => column(array.as_primitive::<Float32Type>().iter(), 6),
        _ => column(array.as_primitive::<Float64Type>().iter(), 15),
    }
}

/// The text of `values` (shortest digits of their own width: an f32's
/// are not those of the same value as an f64); fixed notation for decimal
/// exponents in `-4..fixed_below`.
fn column<T: Copy + Into<f64> + std::fmt::LowerExp>(
    values: impl ExactSizeIterator<Item = Option<T>>,
    fixed_below: i32,
) -> ArrayRef {
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 12);
    let (mut text, mut scratch) = (String::with_capacity(32), String::with_capacity(32));
    for v in values {
        match v {
            Some(v) => {
                write_float(&mut text, &mut scratch, v, fixed_below);
                out.append_value(&text);
            }
            None => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

/// Writes one value into `text` (cleared first), using `scratch` for Rust's
/// `{:e}` form of it (its shortest round-trip digits).
fn write_float<T: Copy + Into<f64> + std::fmt::LowerExp>(
    text: &mut String,
    scratch: &mut String,
    v: T,
    fixed_below: i32,
) {
    let wide: f64 = v.into();
    text.clear();
    if wide.is_nan() {
        text.push_str("NaN");
        return;
    }
    if wide.is_sign_negative() {
        text.push('-');
    }
    if wide.is_infinite() {
        text.push_str("Infinity");
        return;
    }
    scratch.clear();
    let _ = write!(scratch, "{v:e}");
    let scratch = scratch.trim_start_matches('-');
    let (mantissa, exp) = scratch.split_once('e').unwrap_or((scratch, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (first, rest) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = first.len() + rest.len();
    if mantissa == "0" {
        text.push('0');
    } else if (-4..fixed_below).contains(&exp) {
        if exp < 0 {
            text.push_str("0.");
            for _ in 0..(-exp - 1) {
                text.push('0');
            }
            text.push_str(first);
            text.push_str(rest);
        } else {
            let int_digits = exp as usize + 1;
            text.push_str(first);
            if digits <= int_digits {
                text.push_str(rest);
                for _ in digits..int_digits {
                    text.push('0');
                }
            } else {
                text.push_str(&rest[..int_digits - 1]);
                text.push('.');
                text.push_str(&rest[int_digits - 1..]);
            }
        }
    } else {
        text.push_str(first);
        if !rest.is_empty() {
            text.push('.');
            text.push_str(rest);
        }
        let _ = write!(text, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float32Array, Float64Array, StringArray};

    fn texts(array: ArrayRef) -> Vec<Option<String>> {
        let out = float_text(&array);
        let s = out.as_any().downcast_ref::<StringArray>().expect("strings");
        s.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn float8_as_postgresql_writes_it() {
        let values = vec![
            Some(100.0),
            Some(1.5),
            Some(0.1),
            Some(0.0001),
            Some(0.00001),
            Some(1e300),
            Some(5e-324),
            Some(-1.7976931348623157e308),
            Some(123456789.125),
            Some(1e14),
            Some(1e15),
            Some(123456789012345678.0),
            Some(-0.0),
            Some(0.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            None,
        ];
        let want = [
            "100",
            "1.5",
            "0.1",
            "0.0001",
            "1e-05",
            "1e+300",
            "5e-324",
            "-1.7976931348623157e+308",
            "123456789.125",
            "100000000000000",
            "1e+15",
            "1.2345678901234568e+17",
            "-0",
            "0",
            "NaN",
            "Infinity",
            "-Infinity",
        ];
        let got = texts(Arc::new(Float64Array::from(values)));
        let want: Vec<Option<String>> = want.iter().map(|s| Some((*s).to_owned())).chain([None]).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn float4_switches_to_exponents_sooner() {
        let got = texts(Arc::new(Float32Array::from(vec![100000.0f32, 1e6, 0.1, 3.4028235e38])));
        assert_eq!(
            got,
            ["100000", "1e+06", "0.1", "3.4028235e+38"].map(|s| Some(s.to_owned()))
        );
    }
}
