//! Client configuration: pub fields with defaults, builder methods, and `nextdb://` URLs.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::tls::TlsConfig;

/// The port a NextDB node listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 7700;

/// How to reach and talk to a NextDB cluster. Every field is public; the builder
/// methods of the same names only make chaining convenient.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `host:port` of the nodes. A new connection tries them in turn, starting one
    /// further along each time so connections spread over the nodes.
    pub addrs: Vec<String>,
    /// SCRAM-SHA-256 user; `None` sends mechanism `NONE` (servers run `--insecure`).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Sent in HELLO; servers log it.
    pub client_name: String,
    /// Bounds the TCP connect plus the handshake, per address.
    pub connect_timeout: Duration,
    /// Bounds one request (or pipeline) from the first byte written to the last byte
    /// read, and the wait for a free pooled connection.
    pub request_timeout: Duration,
    /// Retries after the first attempt (see [`Error::is_retryable`]).
    pub max_retries: u32,
    /// First retry delay; it doubles per retry up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Most connections a `Client` opens at once (0 is treated as 1) for requests
    /// that may go to any core; when shard-aware, as many again per core.
    pub pool_size: usize,
    /// Send each single-key request (and each BATCH whose keys all live on one core)
    /// straight to the core that owns its key, on a connection to that core's own
    /// port, learned from the node's HELLO answer (protocol version 2). Without it,
    /// or against a node that advertises no shard ports, every request goes to
    /// whichever core the connection landed on, which forwards it to the owner.
    pub shard_aware: bool,
    /// `Some`: connect with TLS (the server must run with `--tls-cert`/`--tls-key`);
    /// `None`: plain TCP.
    pub tls: Option<TlsConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addrs: vec![format!("127.0.0.1:{DEFAULT_PORT}")],
            user: None,
            password: None,
            client_name: format!("nextdb-client/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            pool_size: 4,
            shard_aware: true,
            tls: None,
        }
    }
}

// Hand-written so the password never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addrs", &self.addrs)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("pool_size", &self.pool_size)
            .field("shard_aware", &self.shard_aware)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Config {
    /// Defaults, connecting to `addr`.
    pub fn new(addr: impl Into<String>) -> Config {
        Config {
            addrs: vec![addr.into()],
            ..Config::default()
        }
    }

    pub fn addrs<I, S>(mut self, addrs: I) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.addrs = addrs.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates as `user` with SCRAM-SHA-256.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Config {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    pub fn client_name(mut self, name: impl Into<String>) -> Config {
        self.client_name = name.into();
        self
    }

    pub fn connect_timeout(mut self, t: Duration) -> Config {
        self.connect_timeout = t;
        self
    }

    pub fn request_timeout(mut self, t: Duration) -> Config {
        self.request_timeout = t;
        self
    }

    pub fn max_retries(mut self, n: u32) -> Config {
        self.max_retries = n;
        self
    }

    pub fn backoff(mut self, initial: Duration, max: Duration) -> Config {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    pub fn pool_size(mut self, n: usize) -> Config {
        self.pool_size = n;
        self
    }

    /// Whether to route requests to the core that owns their key (default true).
    pub fn shard_aware(mut self, on: bool) -> Config {
        self.shard_aware = on;
        self
    }

    /// Connects with TLS, trusting and verifying as `tls` says.
    pub fn tls(mut self, tls: TlsConfig) -> Config {
        self.tls = Some(tls);
        self
    }

    /// Parses `nextdb://[user[:password]@]host[:port][,host[:port]...][/][?k=v&...]`,
    /// or the same with `nextdbs://` for TLS.
    ///
    /// User and password may be percent-encoded. The port defaults to 7700. Query keys:
    /// `connect_timeout_ms`, `request_timeout_ms`, `max_retries`, `pool_size`,
    /// `client_name`, `shard_aware` (`true` or `false`); with `nextdbs://` also `ca_file` (required: the PEM file of the
    /// certificates to trust, read now, see [`TlsConfig::from_ca_file`]) and
    /// `server_name` (see [`TlsConfig::server_name`]). An unknown key is an error so a
    /// typo does not pass silently.
    pub fn from_url(url: &str) -> Result<Config> {
        let bad = |why: &str| Error::InvalidArgument(format!("bad nextdb URL: {why}"));
        let (rest, tls) = match url.strip_prefix("nextdbs://") {
            Some(rest) => (rest, true),
            None => (
                url.strip_prefix("nextdb://")
                    .ok_or_else(|| bad("it must start with nextdb:// or nextdbs://"))?,
                false,
            ),
        };
        let mut ca_file = None;
        let mut server_name = None;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(bad("a path is not supported"));
        }
        let mut cfg = Config::default();
        let hosts = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return Err(bad("empty user"));
                }
                cfg.user = Some(percent_decode(user).ok_or_else(|| bad("bad escape in user"))?);
                cfg.password = password
                    .map(|p| percent_decode(p).ok_or_else(|| bad("bad escape in password")))
                    .transpose()?;
                hosts
            }
            None => authority,
        };
        cfg.addrs = hosts
            .split(',')
            .map(|h| {
                if h.is_empty() {
                    return Err(bad("empty host"));
                }
                // The port is whatever follows the last ':' outside IPv6 brackets.
                let has_port = match h.rfind(']') {
                    Some(rb) => h[rb..].contains(':'),
                    None => h.contains(':'),
                };
                Ok(if has_port {
                    h.to_owned()
                } else {
                    format!("{h}:{DEFAULT_PORT}")
                })
            })
            .collect::<Result<_>>()?;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("query parameter without '='"))?;
            let num = || {
                v.parse::<u64>()
                    .map_err(|_| bad(&format!("{k} is not a number")))
            };
            match k {
                "connect_timeout_ms" => cfg.connect_timeout = Duration::from_millis(num()?),
                "request_timeout_ms" => cfg.request_timeout = Duration::from_millis(num()?),
                "max_retries" => {
                    cfg.max_retries = u32::try_from(num()?).map_err(|_| bad("max_retries"))?
                }
                "pool_size" => {
                    cfg.pool_size = usize::try_from(num()?).map_err(|_| bad("pool_size"))?
                }
                "client_name" => {
                    cfg.client_name = percent_decode(v).ok_or_else(|| bad("bad escape"))?
                }
                "shard_aware" => {
                    cfg.shard_aware = v.parse().map_err(|_| bad("shard_aware is true or false"))?
                }
                "ca_file" | "server_name" if !tls => {
                    return Err(bad(&format!("{k} needs nextdbs:// (TLS)")));
                }
                "ca_file" => ca_file = Some(percent_decode(v).ok_or_else(|| bad("bad escape"))?),
                "server_name" => {
                    server_name = Some(percent_decode(v).ok_or_else(|| bad("bad escape"))?)
                }
                _ => return Err(bad(&format!("unknown parameter {k}"))),
            }
        }
        if tls {
            let path = ca_file.ok_or_else(|| bad("nextdbs:// needs ca_file=PATH"))?;
            let mut t = TlsConfig::from_ca_file(path)?;
            t.server_name = server_name;
            cfg.tls = Some(t);
        }
        Ok(cfg)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_everything() {
        let c = Config::from_url(
            "nextdb://al%40ice:p%3Aw@db1,db2:7800,[::1]/?pool_size=2&request_timeout_ms=250&shard_aware=false",
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("al@ice"));
        assert_eq!(c.password.as_deref(), Some("p:w"));
        assert_eq!(c.addrs, ["db1:7700", "db2:7800", "[::1]:7700"]);
        assert_eq!(c.pool_size, 2);
        assert!(!c.shard_aware);
        assert_eq!(c.request_timeout, Duration::from_millis(250));
    }

    #[test]
    fn url_minimal_and_errors() {
        let c = Config::from_url("nextdb://127.0.0.1:7701").unwrap();
        assert_eq!(c.addrs, ["127.0.0.1:7701"]);
        assert_eq!(c.user, None);
        assert!(Config::from_url("http://x").is_err());
        assert!(Config::from_url("nextdb://").is_err());
        assert!(Config::from_url("nextdb://h?bogus=1").is_err());
        assert!(Config::from_url("nextdb://u:%zz@h").is_err());
        assert!(Config::from_url("nextdb://h/db").is_err());
        assert!(Config::from_url("nextdb://h?ca_file=/x.pem").is_err());
        assert!(Config::from_url("nextdbs://h").is_err());
        assert!(matches!(
            Config::from_url("nextdbs://h?ca_file=/nonexistent/ca.pem"),
            Err(Error::Tls(_))
        ));
    }

    #[test]
    fn debug_hides_the_password() {
        let c = Config::default().credentials("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
