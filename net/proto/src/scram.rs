//! SCRAM-SHA-256 (RFC 5802, RFC 7677) without channel binding: the server side that
//! checks a client against a stored verifier, and the client side.
//!
//! The server never sees or stores a password: a [`Verifier`] holds the salt, the
//! iteration count, StoredKey and ServerKey, in PostgreSQL's text form
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The mechanism name of an unauthenticated session (servers started `--insecure`).
pub const MECHANISM_NONE: &str = "NONE";
const GS2_HEADER: &str = "n,,";
/// base64("n,,"): the channel-binding attribute of client-final-message.
const CHANNEL_BINDING: &str = "biws";
const NONCE_BYTES: usize = 18;
const SALT_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("authentication failed")]
    Failed,
    #[error("the server's signature does not match: it does not know the password")]
    BadServerSignature,
    #[error("the server asked for {0} iterations; at least {min} are required", min = crate::limits::SCRAM_MIN_ITERATIONS)]
    WeakIterations(u32),
    #[error("malformed verifier: {0}")]
    BadVerifier(&'static str),
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
    out
}

fn nonce() -> String {
    let mut b = [0u8; NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// Constant-time comparison, so a timing side channel does not leak StoredKey.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the server stores for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Verifier {
    /// Derives a verifier from a password with a fresh random salt.
    pub fn generate(password: &str, iterations: u32) -> Verifier {
        let mut salt = vec![0u8; SALT_BYTES];
        rand::thread_rng().fill_bytes(&mut salt);
        Verifier::derive(password, salt, iterations)
    }

    pub fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let sp = salted_password(password, &salt, iterations);
        let client_key = hmac(&sp, b"Client Key");
        Verifier {
            iterations,
            salt,
            stored_key: sha256(&client_key),
            server_key: hmac(&sp, b"Server Key"),
        }
    }

    /// PostgreSQL's text form.
    pub fn encode(&self) -> String {
        format!(
            "{MECHANISM}${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    pub fn parse(s: &str) -> Result<Verifier, ScramError> {
        let rest = s
            .strip_prefix(MECHANISM)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or(ScramError::BadVerifier("missing SCRAM-SHA-256$ prefix"))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(ScramError::BadVerifier("missing keys"))?;
        let (iter, salt) = params
            .split_once(':')
            .ok_or(ScramError::BadVerifier("missing salt"))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(ScramError::BadVerifier("missing server key"))?;
        let iterations = iter
            .parse()
            .map_err(|_| ScramError::BadVerifier("iterations"))?;
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::BadVerifier("salt"))?;
        let key32 = |s: &str, what| -> Result<[u8; 32], ScramError> {
            B64.decode(s)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or(ScramError::BadVerifier(what))
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key32(stored, "stored key")?,
            server_key: key32(server, "server key")?,
        })
    }
}

/// Splits `a=v,b=w` and returns the value of attribute `name` at position `idx`.
fn attr<'a>(parts: &[&'a str], idx: usize, name: char) -> Result<&'a str, ScramError> {
    let p = parts
        .get(idx)
        .ok_or(ScramError::Malformed("missing attribute"))?;
    let mut ch = p.chars();
    if ch.next() != Some(name) || ch.next() != Some('=') {
        return Err(ScramError::Malformed("unexpected attribute"));
    }
    Ok(&p[2..])
}

fn utf8(b: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(b).map_err(|_| ScramError::Malformed("not UTF-8"))
}

fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest
            .get(i..i + 3)
            .ok_or(ScramError::Malformed("bad escape"))?;
        match esc {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// A node's secret for made-up salts (PostgreSQL's mock authentication nonce): an
/// unknown user is answered with `HMAC-SHA-256(secret, name)` as salt, stable for
/// one node (a client cannot tell a retry for an unknown user from one for a known
/// user) and unpredictable without the secret (nobody can compute offline which salt
/// an unknown name would get, so a salt does not tell whether a user exists).
#[derive(Clone, PartialEq, Eq)]
pub struct MockAuthSecret([u8; MockAuthSecret::BYTES]);

impl MockAuthSecret {
    pub const BYTES: usize = 32;

    pub fn from_bytes(bytes: [u8; MockAuthSecret::BYTES]) -> MockAuthSecret {
        MockAuthSecret(bytes)
    }

    /// A fresh random secret (from the operating system's generator).
    pub fn generate() -> MockAuthSecret {
        let mut b = [0u8; MockAuthSecret::BYTES];
        rand::rngs::OsRng.fill_bytes(&mut b);
        MockAuthSecret(b)
    }

    pub fn as_bytes(&self) -> &[u8; MockAuthSecret::BYTES] {
        &self.0
    }

    /// The salt an unknown `user` is shown.
    pub fn salt_for(&self, user: &str) -> Vec<u8> {
        let mut msg = b"nextdb-unknown-user:".to_vec();
        msg.extend_from_slice(user.as_bytes());
        hmac(&self.0, &msg)[..SALT_BYTES].to_vec()
    }
}

impl std::fmt::Debug for MockAuthSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockAuthSecret(..)")
    }
}

/// The server's side of one exchange, between server-first and client-final.
pub struct ServerExchange {
    user: String,
    known: bool,
    verifier: Verifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerExchange {
    /// Handles client-first-message. `lookup` finds a user's verifier; an unknown user
    /// gets a made-up salt keyed by `mock` so the exchange looks the same and fails at
    /// the end.
    pub fn start(
        client_first: &[u8],
        lookup: impl Fn(&str) -> Option<Verifier>,
        mock: &MockAuthSecret,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        Self::start_as(client_first, None, lookup, mock)
    }

    /// As [`ServerExchange::start`], for `user` when given: PostgreSQL clients name
    /// the user in the startup message and leave SCRAM's `n=` empty.
    pub fn start_as(
        client_first: &[u8],
        user: Option<&str>,
        lookup: impl Fn(&str) -> Option<Verifier>,
        mock: &MockAuthSecret,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let msg = utf8(client_first)?;
        let bare = msg
            .strip_prefix(GS2_HEADER)
            .ok_or(ScramError::Malformed("only gs2 header n,, is supported"))?;
        let parts: Vec<&str> = bare.split(',').collect();
        let named = decode_saslname(attr(&parts, 0, 'n')?)?;
        let user = user.map_or(named, str::to_owned);
        let client_nonce = attr(&parts, 1, 'r')?;
        if client_nonce.is_empty() || client_nonce.contains(',') {
            return Err(ScramError::Malformed("bad nonce"));
        }
        let (known, verifier) = match lookup(&user) {
            Some(v) => (true, v),
            None => {
                let salt = mock.salt_for(&user);
                (
                    false,
                    Verifier {
                        iterations: crate::limits::SCRAM_ITERATIONS,
                        salt,
                        stored_key: [0; 32],
                        server_key: [0; 32],
                    },
                )
            }
        };
        let nonce = format!("{client_nonce}{}", nonce());
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let out = server_first.clone().into_bytes();
        Ok((
            ServerExchange {
                user,
                known,
                verifier,
                client_first_bare: bare.to_owned(),
                server_first,
                nonce,
            },
            out,
        ))
    }

    /// Handles client-final-message; on success returns the user and
    /// server-final-message.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let msg = utf8(client_final)?;
        let parts: Vec<&str> = msg.split(',').collect();
        if attr(&parts, 0, 'c')? != CHANNEL_BINDING {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        if attr(&parts, 1, 'r')? != self.nonce {
            return Err(ScramError::Failed);
        }
        let proof_b64 = attr(&parts, parts.len() - 1, 'p')?;
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::Failed);
        }
        let without_proof = &msg[..msg.len() - proof_b64.len() - 3];
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_sig = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_sig[i];
        }
        if !self.known || !ct_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::Failed);
        }
        let server_sig = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok((
            self.user,
            format!("v={}", B64.encode(server_sig)).into_bytes(),
        ))
    }
}

/// The client's side of one exchange.
pub struct ClientExchange {
    client_first_bare: String,
    nonce: String,
    server_signature: Option<[u8; 32]>,
}

impl ClientExchange {
    /// Starts an exchange for `user`; returns client-first-message.
    pub fn start(user: &str) -> (ClientExchange, Vec<u8>) {
        let nonce = nonce();
        let bare = format!("n={},r={nonce}", encode_saslname(user));
        let msg = format!("{GS2_HEADER}{bare}").into_bytes();
        (
            ClientExchange {
                client_first_bare: bare,
                nonce,
                server_signature: None,
            },
            msg,
        )
    }

    /// Handles server-first-message; returns client-final-message.
    pub fn respond(&mut self, password: &str, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = utf8(server_first)?;
        let parts: Vec<&str> = msg.split(',').collect();
        let nonce = attr(&parts, 0, 'r')?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed("server nonce does not extend ours"));
        }
        let salt = B64
            .decode(attr(&parts, 1, 's')?)
            .map_err(|_| ScramError::Malformed("salt is not base64"))?;
        let iterations: u32 = attr(&parts, 2, 'i')?
            .parse()
            .map_err(|_| ScramError::Malformed("iterations"))?;
        if iterations < crate::limits::SCRAM_MIN_ITERATIONS {
            return Err(ScramError::WeakIterations(iterations));
        }
        let sp = salted_password(password, &salt, iterations);
        let client_key = hmac(&sp, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={CHANNEL_BINDING},r={nonce}");
        let auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let client_sig = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = [0u8; 32];
        for i in 0..32 {
            proof[i] = client_key[i] ^ client_sig[i];
        }
        let server_key = hmac(&sp, b"Server Key");
        self.server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message: proof that the server knows the verifier.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = utf8(server_final)?;
        let sig = msg
            .strip_prefix("v=")
            .ok_or(ScramError::Malformed("server-final-message"))?;
        let sig = B64
            .decode(sig)
            .map_err(|_| ScramError::Malformed("signature is not base64"))?;
        match &self.server_signature {
            Some(expected) if ct_eq(expected, &sig) => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(user: &str, stored_pw: &str, given_pw: &str) -> Result<String, ScramError> {
        let v = Verifier::generate(stored_pw, 4096);
        let (mut c, first) = ClientExchange::start(user);
        let mock = MockAuthSecret::generate();
        let (s, sfirst) =
            ServerExchange::start(&first, |u| (u == "alice").then(|| v.clone()), &mock)?;
        let fin = c.respond(given_pw, &sfirst)?;
        let (u, sfinal) = s.finish(&fin)?;
        c.verify(&sfinal)?;
        Ok(u)
    }

    #[test]
    fn exchange_succeeds_with_the_right_password_only() {
        assert_eq!(run("alice", "pw", "pw").unwrap(), "alice");
        assert_eq!(run("alice", "pw", "wrong"), Err(ScramError::Failed));
        assert_eq!(run("bob", "pw", "pw"), Err(ScramError::Failed));
    }

    fn server_first_salt(user: &str, mock: &MockAuthSecret) -> String {
        let (_, first) = ClientExchange::start(user);
        let (_, sfirst) = ServerExchange::start(&first, |_| None, mock).unwrap();
        let text = String::from_utf8(sfirst).unwrap();
        let salt = text.split(',').find_map(|a| a.strip_prefix("s=")).unwrap();
        salt.to_string()
    }

    #[test]
    fn unknown_users_get_a_salt_keyed_by_the_node_secret() {
        let a = MockAuthSecret::generate();
        let b = MockAuthSecret::generate();
        assert_ne!(a, b);
        // Stable per node and name, different across nodes and names.
        assert_eq!(
            server_first_salt("mallory", &a),
            server_first_salt("mallory", &a)
        );
        assert_ne!(
            server_first_salt("mallory", &a),
            server_first_salt("mallory", &b)
        );
        assert_ne!(
            server_first_salt("mallory", &a),
            server_first_salt("eve", &a)
        );
        // Not the old public function of the name alone.
        let public = B64.encode(&sha256(b"nextdb-unknown-user:mallory")[..SALT_BYTES]);
        assert_ne!(server_first_salt("mallory", &a), public);
        assert_eq!(format!("{a:?}"), "MockAuthSecret(..)");
    }

    #[test]
    fn verifier_text_round_trips() {
        let v = Verifier::generate("secret", 4096);
        assert_eq!(Verifier::parse(&v.encode()).unwrap(), v);
        assert!(Verifier::parse("md5$x").is_err());
    }

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::derive("pencil", salt, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let wp = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let am = format!("{client_first_bare},{server_first},{wp}");
        let sp = salted_password("pencil", &v.salt, 4096);
        let ck = hmac(&sp, b"Client Key");
        let cs = hmac(&v.stored_key, am.as_bytes());
        let proof: Vec<u8> = ck.iter().zip(cs).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let ss = hmac(&v.server_key, am.as_bytes());
        assert_eq!(
            B64.encode(ss),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }
}
