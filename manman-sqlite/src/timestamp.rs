//! [`Timestamp`]: how a time is stored — TEXT in one fixed form, so times compare as text.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{Sqlite, SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Type};

/// The one form every time is written in: UTC, always six fractional digits, `Z`
/// (`2026-11-26T10:00:00.123456Z`). Fixed width, so text order is time order (`<`, `ORDER BY`,
/// `MIN`), and RFC 3339, so SQLite's date functions and a person reading the file understand it.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// A time as the schema stores it; microsecond precision, as in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(pub(crate) DateTime<Utc>);

impl Timestamp {
    /// The stored text.
    pub(crate) fn text(self) -> String {
        self.0.format(FORMAT).to_string()
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.text(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        let at =
            DateTime::parse_from_rfc3339(text).map_err(|e| format!("not a time: {text:?}: {e}"))?;
        Ok(Self(at.with_timezone(&Utc)))
    }
}

/// Optional times, as stored.
pub(crate) fn optional(at: Option<DateTime<Utc>>) -> Option<Timestamp> {
    at.map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SubsecRound, TimeZone};

    #[test]
    fn the_text_is_fixed_width_and_sorts_in_time_order() {
        let whole = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let texts: Vec<String> = [
            whole,
            whole + chrono::Duration::microseconds(1),
            whole + chrono::Duration::milliseconds(500),
            whole + chrono::Duration::seconds(1),
        ]
        .into_iter()
        .map(|at| Timestamp(at).text())
        .collect();
        assert_eq!(texts[0], "2026-11-26T10:00:00.000000Z");
        assert_eq!(texts[1], "2026-11-26T10:00:00.000001Z");
        assert!(texts.iter().all(|t| t.len() == texts[0].len()));
        assert!(texts.windows(2).all(|w| w[0] < w[1]), "{texts:?}");
    }

    #[test]
    fn microseconds_survive_the_round_trip() {
        let at = Utc::now().trunc_subsecs(6);
        let parsed = DateTime::parse_from_rfc3339(&Timestamp(at).text()).unwrap();
        assert_eq!(parsed.with_timezone(&Utc), at);
    }
}
