//! The streaming replication sub-protocol carried in CopyData messages once
//! `START_REPLICATION SLOT ... LOGICAL` has switched the connection to
//! CopyBoth mode.
//!
//! - Server to client: XLogData (`w`), whose payload is one pgoutput message,
//!   and Primary keepalive (`k`), which may ask for an immediate reply.
//! - Client to server: Standby status update (`r`), reporting the write,
//!   flush and apply positions; the flush position is what lets the server
//!   recycle WAL and advance the slot.
//!
//! The CopyData framing itself (`d` + Int32 length) is the driver's business
//! (postgres-protocol); [`ReplicationMessage::parse`] takes the payload.
//! [`encode_standby_status_copy_data`] also writes the framing, since that is
//! the only message this layer sends.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A write-ahead log position (`pg_lsn`): a byte offset into the WAL.
///
/// Displays and parses as PostgreSQL does: two upper-case hex halves
/// separated by `/`, e.g. `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid position `0/0`, which in a status update means "unknown".
    pub const INVALID: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Why a string is not an [`Lsn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN: expected 1-8 hex digits, '/', 1-8 hex digits")]
pub struct ParseLsnError;

impl FromStr for Lsn {
    type Err = ParseLsnError;

    /// Accepts what `pg_lsn_in` accepts: `X/X` with 1 to 8 hex digits on
    /// each side, either case, nothing else.
    fn from_str(s: &str) -> Result<Lsn, ParseLsnError> {
        let (hi, lo) = s.split_once('/').ok_or(ParseLsnError)?;
        let half = |h: &str| {
            if h.is_empty() || h.len() > 8 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseLsnError);
            }
            u32::from_str_radix(h, 16).map_err(|_| ParseLsnError)
        };
        Ok(Lsn((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

/// Microseconds between the Unix epoch and the PostgreSQL epoch
/// (2000-01-01 00:00:00 UTC).
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL `TimestampTz` on the wire: microseconds since
/// 2000-01-01 00:00:00 UTC (negative before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PgTimestamp(pub i64);

impl PgTimestamp {
    /// From microseconds since the Unix epoch.
    pub fn from_unix_micros(us: i64) -> PgTimestamp {
        PgTimestamp(us.saturating_sub(PG_EPOCH_UNIX_MICROS))
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0.saturating_add(PG_EPOCH_UNIX_MICROS)
    }

    /// From a wall-clock reading taken by the caller (this module never
    /// reads the clock itself).
    pub fn from_system_time(t: SystemTime) -> PgTimestamp {
        let us = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |us| -us),
        };
        PgTimestamp::from_unix_micros(us)
    }

    /// As a wall-clock time.
    pub fn to_system_time(self) -> SystemTime {
        let us = self.unix_micros();
        let d = Duration::from_micros(us.unsigned_abs());
        if us >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    }

    /// Appends the time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds
    /// truncated), the `commit_timestamp` format of PROTOCOL 6.3.
    pub fn write_iso_millis<B: BufMut>(self, out: &mut B) {
        let us = self.unix_micros();
        let secs = us.div_euclid(1_000_000);
        let millis = us.rem_euclid(1_000_000) / 1000;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            // Every real commit time: fixed width, digits written directly.
            let mut b = *b"0000-00-00T00:00:00.000Z";
            let put = |b: &mut [u8], at: usize, width: usize, mut v: u64| {
                for k in (at..at + width).rev() {
                    b[k] = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            put(&mut b, 0, 4, y as u64);
            put(&mut b, 5, 2, u64::from(m));
            put(&mut b, 8, 2, u64::from(d));
            put(&mut b, 11, 2, (sod / 3600) as u64);
            put(&mut b, 14, 2, (sod / 60 % 60) as u64);
            put(&mut b, 17, 2, (sod % 60) as u64);
            put(&mut b, 20, 3, millis as u64);
            out.put_slice(&b);
            return;
        }
        let mut buf = [0u8; 32];
        let mut w = &mut buf[..];
        // Writing into a fixed array cannot fail for in-range values; the
        // year is clamped so the width stays bounded.
        let _ = std::io::Write::write_fmt(
            &mut w,
            format_args!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                y.clamp(-9999, 99_999),
                m,
                d,
                sod / 3600,
                sod / 60 % 60,
                sod % 60,
                millis
            ),
        );
        let n = 32 - w.len();
        out.put_slice(&buf[..n]);
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One WAL chunk: for a logical slot, exactly one output plugin message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XLogData {
    /// WAL position of the start of this data.
    pub start: Lsn,
    /// The server's current end of WAL.
    pub end: Lsn,
    /// The server's clock when it sent the message.
    pub send_time: PgTimestamp,
    /// The plugin message (a slice of the CopyData payload, not a copy).
    pub data: Bytes,
}

/// A heartbeat from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryKeepalive {
    /// The server's current end of WAL.
    pub end: Lsn,
    /// The server's clock when it sent the message.
    pub send_time: PgTimestamp,
    /// The server wants a status update now (or it will time us out).
    pub reply_requested: bool,
}

/// A CopyData payload received on a replication connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// `w`: WAL data.
    XLogData(XLogData),
    /// `k`: keepalive.
    Keepalive(PrimaryKeepalive),
}

/// Why a CopyData payload is not a replication message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicationError {
    /// The payload was empty.
    #[error("empty CopyData payload")]
    Empty,
    /// The first byte is neither `w` nor `k`.
    #[error("unknown replication message tag {0:#04x}")]
    UnknownTag(u8),
    /// The payload is shorter than its fixed header.
    #[error("truncated {0} message")]
    Truncated(&'static str),
    /// A keepalive longer than its fixed size.
    #[error("trailing bytes after keepalive")]
    TrailingBytes,
}

/// Length of an XLogData header: tag + start + end + time.
const XLOGDATA_HEADER: usize = 1 + 8 + 8 + 8;
/// Length of a keepalive: tag + end + time + reply flag.
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;
/// Length of a standby status update: tag + 3 LSNs + time + reply flag.
pub const STATUS_UPDATE_LEN: usize = 1 + 8 + 8 + 8 + 8 + 1;

impl ReplicationMessage {
    /// Parses one CopyData payload. XLogData keeps `data` as a slice of
    /// `payload`; garbage is an error, never a panic.
    pub fn parse(payload: Bytes) -> Result<ReplicationMessage, ReplicationError> {
        match payload.first() {
            None => Err(ReplicationError::Empty),
            Some(b'w') => {
                if payload.len() < XLOGDATA_HEADER {
                    return Err(ReplicationError::Truncated("XLogData"));
                }
                let mut h = &payload[1..XLOGDATA_HEADER];
                let start = Lsn(h.get_u64());
                let end = Lsn(h.get_u64());
                let send_time = PgTimestamp(h.get_i64());
                Ok(ReplicationMessage::XLogData(XLogData {
                    start,
                    end,
                    send_time,
                    data: payload.slice(XLOGDATA_HEADER..),
                }))
            }
            Some(b'k') => {
                if payload.len() < KEEPALIVE_LEN {
                    return Err(ReplicationError::Truncated("keepalive"));
                }
                if payload.len() > KEEPALIVE_LEN {
                    return Err(ReplicationError::TrailingBytes);
                }
                let mut h = &payload[1..];
                Ok(ReplicationMessage::Keepalive(PrimaryKeepalive {
                    end: Lsn(h.get_u64()),
                    send_time: PgTimestamp(h.get_i64()),
                    reply_requested: h.get_u8() != 0,
                }))
            }
            Some(&tag) => Err(ReplicationError::UnknownTag(tag)),
        }
    }
}

/// What the client reports in a Standby status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyStatusUpdate {
    /// Last WAL byte + 1 received.
    pub write: Lsn,
    /// Last WAL byte + 1 durably handled: the slot's confirmed position.
    pub flush: Lsn,
    /// Last WAL byte + 1 applied.
    pub apply: Lsn,
    /// The client's clock, passed in by the caller.
    pub client_time: PgTimestamp,
    /// Ask the server to answer with a keepalive at once.
    pub reply_requested: bool,
}

/// Appends the `r` payload (34 bytes) of a Standby status update.
pub fn encode_standby_status_update<B: BufMut>(out: &mut B, u: &StandbyStatusUpdate) {
    out.put_u8(b'r');
    out.put_u64(u.write.0);
    out.put_u64(u.flush.0);
    out.put_u64(u.apply.0);
    out.put_i64(u.client_time.0);
    out.put_u8(u8::from(u.reply_requested));
}

/// Appends a whole frontend CopyData message (`d`, Int32 length, payload)
/// carrying a Standby status update; the length is back-patched.
pub fn encode_standby_status_copy_data(out: &mut BytesMut, u: &StandbyStatusUpdate) {
    out.put_u8(b'd');
    let len_at = out.len();
    out.put_i32(0);
    encode_standby_status_update(out, u);
    let len = (out.len() - len_at) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_display_and_parse() {
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!("16/B374D848".parse(), Ok(Lsn(0x16_B374_D848)));
        assert_eq!("16/b374d848".parse(), Ok(Lsn(0x16_B374_D848)));
        assert_eq!("0/0".parse(), Ok(Lsn(0)));
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "123456789/0",
            "g/0",
            "+1/0",
            " 1/0",
        ] {
            assert_eq!(bad.parse::<Lsn>(), Err(ParseLsnError), "{bad:?}");
        }
    }

    #[test]
    fn pg_epoch_conversions() {
        assert_eq!(PgTimestamp(0).unix_micros(), PG_EPOCH_UNIX_MICROS);
        assert_eq!(
            PgTimestamp::from_unix_micros(PG_EPOCH_UNIX_MICROS),
            PgTimestamp(0)
        );
        let t = UNIX_EPOCH + Duration::from_micros(1_704_110_400_123_456);
        let pg = PgTimestamp::from_system_time(t);
        assert_eq!(pg.unix_micros(), 1_704_110_400_123_456);
        assert_eq!(pg.to_system_time(), t);
        let before = UNIX_EPOCH - Duration::from_micros(5);
        assert_eq!(PgTimestamp::from_system_time(before).unix_micros(), -5);
        assert_eq!(
            PgTimestamp::from_system_time(before).to_system_time(),
            before
        );
    }

    fn iso(t: PgTimestamp) -> String {
        let mut v = Vec::new();
        t.write_iso_millis(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn iso_millis_format() {
        assert_eq!(iso(PgTimestamp(0)), "2000-01-01T00:00:00.000Z");
        // 2024-01-01 12:00:00.123456 UTC: millis are truncated, not rounded.
        let t = PgTimestamp::from_unix_micros(1_704_110_400_123_999);
        assert_eq!(iso(t), "2024-01-01T12:00:00.123Z");
        assert_eq!(iso(PgTimestamp(-1)), "1999-12-31T23:59:59.999Z");
        assert_eq!(
            iso(PgTimestamp::from_unix_micros(0)),
            "1970-01-01T00:00:00.000Z"
        );
        // Leap day.
        let t = PgTimestamp::from_unix_micros(951_782_400_000_000);
        assert_eq!(iso(t), "2000-02-29T00:00:00.000Z");
    }

    /// The general (formatted) rendering, for comparing the fast path.
    fn fmt_iso(t: PgTimestamp) -> String {
        let us = t.unix_micros();
        let secs = us.div_euclid(1_000_000);
        let millis = us.rem_euclid(1_000_000) / 1000;
        let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            y.clamp(-9999, 99_999),
            m,
            d,
            sod / 3600,
            sod / 60 % 60,
            sod % 60,
            millis
        )
    }

    #[test]
    fn iso_millis_fast_path_agrees_with_formatting() {
        // Every day boundary, second and millisecond pattern over a spread
        // of times from year 0 to 9999 and around both edges.
        let mut t: i64 = -63_082_281_600_000_000 - 946_684_800_000_000 - 5_000_000;
        let step = 7_919_000_000_013; // ~92 days and an odd remainder
        while t < 253_402_300_800_000_000 - 946_684_800_000_000 + 5_000_000 {
            let ts = PgTimestamp(t);
            assert_eq!(iso(ts), fmt_iso(ts), "{t}");
            t += step;
        }
        for t in [i64::MIN, i64::MAX, 0, -1, 1] {
            assert_eq!(iso(PgTimestamp(t)), fmt_iso(PgTimestamp(t)), "{t}");
        }
    }

    #[test]
    fn parse_xlogdata() {
        let mut b = BytesMut::new();
        b.put_u8(b'w');
        b.put_u64(0x1_0000_0010);
        b.put_u64(0x1_0000_0020);
        b.put_i64(42);
        b.put_slice(b"Bpayload");
        let payload = b.freeze();
        let ReplicationMessage::XLogData(x) = ReplicationMessage::parse(payload.clone()).unwrap()
        else {
            panic!("not XLogData");
        };
        assert_eq!(x.start, Lsn(0x1_0000_0010));
        assert_eq!(x.end.to_string(), "1/20");
        assert_eq!(x.send_time, PgTimestamp(42));
        assert_eq!(&x.data[..], b"Bpayload");
        // A slice of the same buffer, not a copy.
        assert_eq!(x.data.as_ptr(), payload[XLOGDATA_HEADER..].as_ptr());
        assert_eq!(
            ReplicationMessage::parse(payload.slice(..XLOGDATA_HEADER - 1)),
            Err(ReplicationError::Truncated("XLogData"))
        );
    }

    #[test]
    fn parse_keepalive() {
        let mut b = BytesMut::new();
        b.put_u8(b'k');
        b.put_u64(77);
        b.put_i64(-3);
        b.put_u8(1);
        let payload = b.freeze();
        assert_eq!(
            ReplicationMessage::parse(payload.clone()),
            Ok(ReplicationMessage::Keepalive(PrimaryKeepalive {
                end: Lsn(77),
                send_time: PgTimestamp(-3),
                reply_requested: true,
            }))
        );
        let short = payload.slice(..KEEPALIVE_LEN - 1);
        assert_eq!(
            ReplicationMessage::parse(short),
            Err(ReplicationError::Truncated("keepalive"))
        );
        let mut long = payload.to_vec();
        long.push(0);
        assert_eq!(
            ReplicationMessage::parse(long.into()),
            Err(ReplicationError::TrailingBytes)
        );
        assert_eq!(
            ReplicationMessage::parse(Bytes::new()),
            Err(ReplicationError::Empty)
        );
        assert_eq!(
            ReplicationMessage::parse(Bytes::from_static(b"x")),
            Err(ReplicationError::UnknownTag(b'x'))
        );
    }

    #[test]
    fn encode_status_update() {
        let u = StandbyStatusUpdate {
            write: Lsn(0x0102030405060708),
            flush: Lsn(2),
            apply: Lsn(3),
            client_time: PgTimestamp(-1),
            reply_requested: true,
        };
        let mut out = BytesMut::new();
        encode_standby_status_update(&mut out, &u);
        assert_eq!(out.len(), STATUS_UPDATE_LEN);
        assert_eq!(out[0], b'r');
        assert_eq!(&out[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[17..25], &3u64.to_be_bytes());
        assert_eq!(&out[25..33], &[0xff; 8]);
        assert_eq!(out[33], 1);

        let mut framed = BytesMut::from(&b"prefix"[..]);
        encode_standby_status_copy_data(&mut framed, &u);
        assert_eq!(&framed[..6], b"prefix");
        assert_eq!(framed[6], b'd');
        assert_eq!(
            &framed[7..11],
            &(4 + STATUS_UPDATE_LEN as i32).to_be_bytes()
        );
        assert_eq!(&framed[11..], &out[..]);
    }

    proptest! {
        #[test]
        fn lsn_round_trips(v in any::<u64>()) {
            prop_assert_eq!(Lsn(v).to_string().parse::<Lsn>(), Ok(Lsn(v)));
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ReplicationMessage::parse(Bytes::from(data));
        }

        #[test]
        fn iso_millis_never_panics(t in any::<i64>()) {
            let mut v = Vec::new();
            PgTimestamp(t).write_iso_millis(&mut v);
            prop_assert!(v.ends_with(b"Z"));
        }
    }
}
