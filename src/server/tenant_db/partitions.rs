//! Daily partitions of `realtime.messages`, kept as the Elixir server
//! keeps them: one per UTC day named `messages_YYYY_MM_DD` covering
//! `[day, day + 1)`, created for yesterday through today + 3 (owned by
//! `supabase_realtime_admin`), and dropped once their day is before the
//! date of 72 hours ago, taking their messages with them (that is how old
//! messages go: replay never sees more than three days).

use crate::proto::pg::replication::civil_from_days;
use crate::server::migrator::first_column;
use crate::server::pgconn::{PgConn, PgError};

/// Days before today that get a partition.
const DAYS_BACK: i64 = 1;
/// Days after today that get a partition.
const DAYS_AHEAD: i64 = 3;
/// Age past which messages are dropped, in hours.
const KEEP_HOURS: i64 = 72;

/// A UTC day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub i64);

impl Day {
    /// The UTC day of Unix time `secs`.
    pub fn of_unix(secs: i64) -> Day {
        Day(secs.div_euclid(86_400))
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        let (y, m, d) = civil_from_days(self.0);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// The partition holding this day: `messages_YYYY_MM_DD`.
    pub fn partition(self) -> String {
        format!("messages_{}", self.iso().replace('-', "_"))
    }

    /// The day a partition name stands for, if it is one of ours.
    pub fn of_partition(name: &str) -> Option<Day> {
        let rest = name.strip_prefix("messages_")?;
        let mut parts = rest.split('_');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        let day = Day(days_from_civil(y, m, d));
        // Reject dates that do not exist (2026_02_30).
        (day.iso() == format!("{y:04}-{m:02}-{d:02}")).then_some(day)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of
/// `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The days that must have a partition at Unix time `now`.
pub fn wanted(now: i64) -> impl Iterator<Item = Day> {
    let today = Day::of_unix(now).0;
    (today - DAYS_BACK..=today + DAYS_AHEAD).map(Day)
}

/// Whether the partition of `day` is past keeping at Unix time `now`.
pub fn expired(day: Day, now: i64) -> bool {
    day < Day::of_unix(now - KEEP_HOURS * 3600)
}

/// What one maintenance pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintained {
    /// Partitions created, by name.
    pub created: Vec<String>,
    /// Partitions dropped, by name.
    pub dropped: Vec<String>,
}

/// Drops the expired partitions and creates the missing ones, as of Unix
/// time `now`. Names come from dates, never from a client.
pub async fn maintain(conn: &mut PgConn, now: i64) -> Result<Maintained, PgError> {
    let existing = conn
        .query(
            "select c.relname::text
             from pg_inherits i
             join pg_class c on c.oid = i.inhrelid
             join pg_namespace n on n.oid = c.relnamespace
             where i.inhparent = 'realtime.messages'::regclass and n.nspname = 'realtime'",
            &[],
        )
        .await?;
    let names = first_column(&existing.rows);
    let mut out = Maintained::default();
    for name in &names {
        if Day::of_partition(name).is_some_and(|d| expired(d, now)) {
            conn.simple_query(&format!("drop table if exists realtime.{name}"))
                .await?;
            out.dropped.push(name.clone());
        }
    }
    for day in wanted(now) {
        let name = day.partition();
        if names.contains(&name) {
            continue;
        }
        conn.simple_query(&format!(
            "create table if not exists realtime.{name} partition of realtime.messages
                 for values from ('{}') to ('{}');
             alter table realtime.{name} owner to supabase_realtime_admin",
            day.iso(),
            Day(day.0 + 1).iso()
        ))
        .await?;
        out.created.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-07 09:00:00 UTC
    const NOW: i64 = 1_796_634_000;

    #[test]
    fn yesterday_to_today_plus_three() {
        let names: Vec<String> = wanted(NOW).map(Day::partition).collect();
        assert_eq!(
            names,
            [
                "messages_2026_12_06",
                "messages_2026_12_07",
                "messages_2026_12_08",
                "messages_2026_12_09",
                "messages_2026_12_10"
            ]
        );
    }

    #[test]
    fn dropped_when_older_than_the_date_72_hours_ago() {
        let day = |s| Day::of_partition(s).unwrap();
        // 72 h before is 2026-12-04 09:00: the 4th is kept, the 3rd goes.
        assert!(!expired(day("messages_2026_12_04"), NOW));
        assert!(expired(day("messages_2026_12_03"), NOW));
        assert!(expired(day("messages_2025_01_01"), NOW));
        assert!(!expired(day("messages_2026_12_07"), NOW));
    }

    #[test]
    fn partition_names_round_trip_and_others_are_left_alone() {
        for d in [Day(0), Day(20_000), Day(20_794), Day(-1)] {
            assert_eq!(Day::of_partition(&d.partition()), Some(d));
        }
        for other in [
            "messages",
            "messages_2026_02_30",
            "messages_2026_1_01",
            "messages_2026_01_01_x",
            "messages_backup",
        ] {
            assert_eq!(Day::of_partition(other), None, "{other}");
        }
    }
}
