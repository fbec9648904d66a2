//! Canonical decimal numbers in headers, form fields and JSON strings.
//!
//! A number with more than one spelling lets one signed value pass as another: NetEase's CheckSum covers
//! `Nonce + CurTime` concatenated, so headers captured with a Nonce ending in `0` could be replayed as
//! `Nonce` without its last `0` and `CurTime = 0<t>`, a header set the replay guard has never seen. Only the one
//! canonical spelling is accepted: ASCII digits, no sign, no leading zero (except `0` itself).

/// Parses `text` when it is the canonical decimal spelling of a `u64`.
///
/// ```
/// use tokenmint::decimal::parse_u64;
///
/// assert_eq!(parse_u64("1443592222"), Some(1_443_592_222));
/// assert_eq!(parse_u64("0"), Some(0));
/// assert_eq!(parse_u64("01443592222"), None);
/// assert_eq!(parse_u64("+1"), None);
/// ```
pub fn parse_u64(text: &str) -> Option<u64> {
    is_canonical(text).then(|| text.parse().ok()).flatten()
}

/// Parses `text` when it is the canonical decimal spelling of a non-negative `i64`.
pub fn parse_i64(text: &str) -> Option<i64> {
    parse_u64(text).and_then(|n| i64::try_from(n).ok())
}

/// Whether `text` is digits only, without a leading zero (except `0` itself).
pub fn is_canonical(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_parses() {
        let cases = [
            ("0", Some(0)),
            ("7", Some(7)),
            ("1693968975000", Some(1_693_968_975_000)),
            ("", None),
            ("00", None),
            ("07", None),
            ("+7", None),
            ("-7", None),
            (" 7", None),
            ("7 ", None),
            ("7.0", None),
            ("1e3", None),
            ("99999999999999999999999", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_u64(text), expected, "{text:?}");
        }
        assert_eq!(parse_i64("9223372036854775808"), None, "past i64::MAX");
    }
}
