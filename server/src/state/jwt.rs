//! etcd's JWT auth tokens (`--auth-token jwt,...`; etcd's `server/auth/jwt.go`
//! and `options.go`): a signed token naming the user, the auth revision it
//! was issued at and when it expires:
//!
//! ```text
//! base64url({"alg":"RS256","typ":"JWT"}) "." base64url({"exp":1700000300,"revision":7,"username":"alice"}) "." base64url(signature)
//! ```
//!
//! Nothing is stored, so any member holding the key accepts any member's
//! token. A member given only the public key (`pub-key`) verifies tokens
//! but cannot sign them (etcd's "verify-only"); HS256/384/512 sign and verify
//! with the `priv-key` file's bytes as the shared secret.
//!
//! Keys are read as etcd's `golang-jwt` reads them: RSA private keys in
//! PKCS#1 or PKCS#8 PEM, EC private keys in SEC1 (`EC PRIVATE KEY`, what
//! `openssl ecparam -genkey` writes) or PKCS#8, Ed25519 private keys in
//! PKCS#8; public keys as `PUBLIC KEY` (RSA also `RSA PUBLIC KEY`, RSA and
//! EC also a certificate). Given both, they must match. A token is accepted
//! as golang-jwt accepts it: three base64url parts, the configured `alg`, a
//! valid signature, `exp` (when present) in the future, `nbf` (when
//! present) not in the future, and etcd's `username` (a string) and
//! `revision` (a number) claims.
//!
//! The crypto is `jsonwebtoken`'s (RustCrypto); ES512, which it lacks, is
//! `p521`'s, with the same framing.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p521::ecdsa::signature::{Signer as _, Verifier as _};
use p521::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rustls_pki_types::pem::SectionKind;
use serde_json::{Map, Value};

use crate::config::JwtOptions;
use crate::error::{Error, Result};

/// etcd's `ErrMissingKey`.
const MISSING_KEY: &str = "auth: missing key data";
/// etcd's `ErrKeyMismatch`.
const KEY_MISMATCH: &str = "auth: public and private keys don't match";

/// A member's JWT signer and verifier.
pub struct JwtTokens {
    /// The `sign-method`, as tokens carry it in `alg`.
    method: String,
    keys: Keys,
    ttl: Duration,
}

/// The keys, by the library that uses them.
enum Keys {
    /// Every method but ES512. `sign` is `None` on a verify-only member.
    Jwt { alg: Algorithm, sign: Option<EncodingKey>, verify: DecodingKey },
    /// ES512 (ECDSA on P-521 with SHA-512).
    Es512 { sign: Option<Box<p521::ecdsa::SigningKey>>, verify: p521::ecdsa::VerifyingKey },
}

/// The claims etcd puts in a token, in the order Go's JSON encoder writes
/// them (sorted). With the header written as golang-jwt writes it, a token
/// is etcd's byte for byte where the signature is deterministic (HS*, RS*,
/// EdDSA).
#[derive(serde::Serialize)]
struct Claims<'a> {
    exp: i64,
    revision: u64,
    username: &'a str,
}

impl JwtTokens {
    /// Reads and checks the keys `opts` names, failing with etcd's errors
    /// (and the file at fault).
    pub fn load(opts: &JwtOptions) -> Result<JwtTokens, String> {
        let read = |path: &Option<std::path::PathBuf>| -> Result<Option<Vec<u8>>, String> {
            match path {
                None => Ok(None),
                Some(p) => std::fs::read(p)
                    .map(|b| (!b.is_empty()).then_some(b))
                    .map_err(|e| format!("auth: reading {}: {e}", p.display())),
            }
        };
        let private = read(&opts.private_key)?;
        let public = read(&opts.public_key)?;
        let method = opts.sign_method.clone();
        let keys = if method == "ES512" {
            es512_keys(private.as_deref(), public.as_deref(), opts)?
        } else {
            let alg: Algorithm = method
                .parse()
                .map_err(|_| format!("auth: invalid auth signature method {method:?}"))?;
            jwt_keys(alg, private.as_deref(), public.as_deref(), opts)?
        };
        let tokens = JwtTokens { method, keys, ttl: opts.ttl };
        tokens.check_pair()?;
        Ok(tokens)
    }

    /// Whether this member only verifies (it was given no private key).
    pub fn verify_only(&self) -> bool {
        match &self.keys {
            Keys::Jwt { sign, .. } => sign.is_none(),
            Keys::Es512 { sign, .. } => sign.is_none(),
        }
    }

    /// A token for `user` at auth `revision`, valid for the TTL from now.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String> {
        let exp = unix_now().as_secs() as i64 + self.ttl.as_secs() as i64;
        let claims = Claims { exp, revision, username: user };
        self.sign_claims(&serde_json::to_vec(&claims).expect("claims serialize"))
    }

    fn sign_claims(&self, claims: &[u8]) -> Result<String> {
        let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, self.method);
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = match &self.keys {
            Keys::Jwt { sign: None, .. } | Keys::Es512 { sign: None, .. } => {
                return Err(Error::VerifyOnly);
            }
            Keys::Jwt { alg, sign: Some(key), .. } => {
                jsonwebtoken::crypto::sign(message.as_bytes(), key, *alg)
                    .map_err(|e| Error::Internal(format!("signing a JWT: {e}")))?
            }
            Keys::Es512 { sign: Some(key), .. } => {
                let sig: p521::ecdsa::Signature = key
                    .try_sign(message.as_bytes())
                    .map_err(|e| Error::Internal(format!("signing a JWT: {e}")))?;
                URL_SAFE_NO_PAD.encode(sig.to_bytes())
            }
        };
        Ok(format!("{message}.{signature}"))
    }

    /// The user and auth revision `token` carries, if it is one of ours and
    /// still valid (etcd's `tokenJWT.info`); why not, otherwise.
    pub fn verify(&self, token: &str) -> Result<(String, u64), String> {
        let (message, signature) = token.rsplit_once('.').ok_or("not three parts")?;
        let (header, payload) = message.split_once('.').ok_or("not three parts")?;
        let header = decode_json(header).ok_or("undecodable header")?;
        if header.get("alg").and_then(Value::as_str) != Some(self.method.as_str()) {
            return Err("invalid signing method".into());
        }
        if !self.signature_valid(message, signature) {
            return Err("signature is invalid".into());
        }
        let claims = decode_json(payload).ok_or("undecodable claims")?;
        check_times(&claims, unix_now().as_secs_f64())?;
        let user = claims.get("username").and_then(Value::as_str).ok_or("no user claim")?;
        let revision = claims.get("revision").and_then(Value::as_f64).ok_or("no revision claim")?;
        // Go's uint64(float64), as etcd converts it.
        Ok((user.to_string(), revision as u64))
    }

    /// Whether `signature` (base64url) is this method's signature of
    /// `message` under the verifying key.
    fn signature_valid(&self, message: &str, signature: &str) -> bool {
        match &self.keys {
            Keys::Jwt { alg, verify, .. } => {
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), verify, *alg)
                    .unwrap_or(false)
            }
            Keys::Es512 { verify, .. } => URL_SAFE_NO_PAD
                .decode(signature)
                .ok()
                .and_then(|s| p521::ecdsa::Signature::from_slice(&s).ok())
                .is_some_and(|s| verify.verify(message.as_bytes(), &s).is_ok()),
        }
    }

    /// Given both keys, a probe signed with the private one must verify
    /// with the public one; given one, it must suit the method.
    fn check_pair(&self) -> Result<(), String> {
        let token = match self.sign_claims(b"{}") {
            Ok(token) => token,
            Err(Error::VerifyOnly) => return self.check_public_key(),
            Err(e) => {
                return Err(format!("auth: the private key does not suit {}: {e}", self.method));
            }
        };
        let (message, signature) = token.rsplit_once('.').expect("a token we just joined");
        if self.signature_valid(message, signature) { Ok(()) } else { Err(KEY_MISMATCH.into()) }
    }

    /// A verify-only member's key must be usable for its method (a P-256
    /// key for ES384 is not): verifying a junk signature must fail as a
    /// bad signature, not as a bad key.
    fn check_public_key(&self) -> Result<(), String> {
        match &self.keys {
            Keys::Jwt { alg, verify, .. } => {
                jsonwebtoken::crypto::verify("AAAA", b"probe", verify, *alg)
                    .map(|_| ())
                    .map_err(|e| format!("auth: the public key does not suit {}: {e}", self.method))
            }
            Keys::Es512 { .. } => Ok(()),
        }
    }
}

/// The keys for every method jsonwebtoken knows.
fn jwt_keys(
    alg: Algorithm,
    private: Option<&[u8]>,
    public: Option<&[u8]>,
    opts: &JwtOptions,
) -> Result<Keys, String> {
    use jsonwebtoken::AlgorithmFamily as F;
    let family = alg.family();
    if family == F::Hmac {
        let secret = private.ok_or(MISSING_KEY)?;
        let bad = |e: jsonwebtoken::errors::Error| format!("auth: HMAC secret: {e}");
        return Ok(Keys::Jwt {
            alg,
            sign: Some(EncodingKey::from_secret(secret).map_err(bad)?),
            verify: DecodingKey::from_secret(secret).map_err(bad)?,
        });
    }
    let what = match family {
        F::Rsa => "RSA",
        F::Ec => "ECDSA",
        _ => "Ed25519",
    };
    let sign = match private {
        None => None,
        Some(pem) => {
            let bad = |e: String| key_error(opts.private_key.as_deref(), what, "private", &e);
            let key = match family {
                F::Rsa => EncodingKey::from_rsa_pem(pem).map_err(|e| bad(e.to_string()))?,
                F::Ec => {
                    EncodingKey::from_ec_der(&ec_private_pkcs8(pem, alg_curve(alg)).map_err(bad)?)
                }
                _ => EncodingKey::from_ed_pem(pem).map_err(|e| bad(e.to_string()))?,
            };
            Some(key)
        }
    };
    let verify = match (public, &sign) {
        (Some(pem), _) => {
            let bad = |e: jsonwebtoken::errors::Error| {
                key_error(opts.public_key.as_deref(), what, "public", &e.to_string())
            };
            match family {
                F::Rsa => DecodingKey::from_rsa_pem(pem).map_err(bad)?,
                F::Ec => DecodingKey::from_ec_pem(pem).map_err(bad)?,
                _ => DecodingKey::from_ed_pem(pem).map_err(bad)?,
            }
        }
        (None, Some(key)) => public_of(alg, key)
            .map_err(|e| key_error(opts.private_key.as_deref(), what, "private", &e.to_string()))?,
        (None, None) => return Err(MISSING_KEY.into()),
    };
    Ok(Keys::Jwt { alg, sign, verify })
}

/// The verifying key of a private key.
fn public_of(alg: Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<DecodingKey> {
    let utils = &DEFAULT_PROVIDER.key_utils;
    let der = key.as_bytes();
    Ok(match alg.family() {
        jsonwebtoken::AlgorithmFamily::Rsa => {
            let (n, e) = (utils.rsa_pub_components_from_private_key)(der)?;
            DecodingKey::from_rsa_raw_components(&n, &e)
        }
        jsonwebtoken::AlgorithmFamily::Ec => {
            let (_, x, y) = (utils.ec_pub_components_from_private_key)(der, alg)?;
            DecodingKey::from_ec_der(&[&[0x04][..], &x, &y].concat())
        }
        _ => {
            let x = (utils.ed_pub_components_from_private_key)(der, &EllipticCurve::Ed25519)?;
            DecodingKey::from_ed_der(&x)
        }
    })
}

/// The ES512 keys (P-521).
fn es512_keys(
    private: Option<&[u8]>,
    public: Option<&[u8]>,
    opts: &JwtOptions,
) -> Result<Keys, String> {
    let sign = match private {
        None => None,
        Some(pem) => {
            let bad = |e: String| key_error(opts.private_key.as_deref(), "ECDSA", "private", &e);
            let der = ec_private_pkcs8(pem, P521_OID).map_err(bad)?;
            let key =
                p521::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?;
            Some(Box::new(key))
        }
    };
    let verify = match (public, &sign) {
        (Some(pem), _) => {
            let bad = |e: String| key_error(opts.public_key.as_deref(), "ECDSA", "public", &e);
            let spki = public_key_der(pem).map_err(bad)?;
            p521::ecdsa::VerifyingKey::from_public_key_der(&spki).map_err(|e| bad(e.to_string()))?
        }
        (None, Some(key)) => *key.verifying_key(),
        (None, None) => return Err(MISSING_KEY.into()),
    };
    Ok(Keys::Es512 { sign, verify })
}

/// etcd's key errors ("key is not a valid RSA private key"), naming the file.
fn key_error(file: Option<&Path>, what: &str, which: &str, detail: &str) -> String {
    let file = file.map(|f| format!("{}: ", f.display())).unwrap_or_default();
    format!("auth: {file}key is not a valid {what} {which} key ({detail})")
}

// DER object identifiers (tag, length, value) of the EC key algorithm and curves.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

fn alg_curve(alg: Algorithm) -> &'static [u8] {
    if alg == Algorithm::ES384 { P384_OID } else { P256_OID }
}

/// The first PEM section of `pem` as PKCS#8: a PKCS#8 key as it is, a SEC1
/// `EC PRIVATE KEY` wrapped as the curve `sign-method` names.
fn ec_private_pkcs8(pem: &[u8], curve: &[u8]) -> Result<Vec<u8>, String> {
    match first_section(pem)? {
        (SectionKind::PrivateKey, der) => Ok(der),
        (SectionKind::EcPrivateKey, sec1) => {
            // PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier
            // { id-ecPublicKey, namedCurve }, OCTET STRING { ECPrivateKey } }
            let algorithm = der(0x30, &[EC_PUBLIC_KEY_OID, curve].concat());
            let body = [&[0x02, 0x01, 0x00][..], &algorithm, &der(0x04, &sec1)].concat();
            Ok(der(0x30, &body))
        }
        (kind, _) => Err(format!("a {kind:?} PEM section, not an EC private key")),
    }
}

/// The SubjectPublicKeyInfo of a `PUBLIC KEY` or a certificate.
fn public_key_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    match first_section(pem)? {
        (SectionKind::PublicKey, der) => Ok(der),
        (SectionKind::Certificate, der) => {
            let (_, cert) = x509_parser::parse_x509_certificate(&der)
                .map_err(|e| format!("certificate: {e}"))?;
            Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
        }
        (kind, _) => Err(format!("a {kind:?} PEM section, not a public key")),
    }
}

/// The first PEM section `pem` holds (golang-jwt reads the first block).
fn first_section(pem: &[u8]) -> Result<(SectionKind, Vec<u8>), String> {
    rustls_pki_types::pem::from_buf(&mut &pem[..])
        .map_err(|e| format!("invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key ({e})"))?
        .ok_or_else(|| "invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key".to_string())
}

/// One DER element (definite length).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        assert!(len <= 0xffff, "a DER element of {len} bytes");
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// golang-jwt's time checks at `now` (seconds since the epoch): `exp`, when
/// present, must be after now and `nbf` not after it; both are whole
/// seconds (fractions truncated) and must be numbers.
fn check_times(claims: &Map<String, Value>, now: f64) -> Result<(), String> {
    let date = |name: &str| -> Result<Option<f64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|d| Some(d.trunc())).ok_or(format!("{name} is invalid")),
        }
    };
    if let Some(exp) = date("exp")?
        && now >= exp
    {
        return Err("token is expired".into());
    }
    if let Some(nbf) = date("nbf")?
        && now < nbf
    {
        return Err("token is not valid yet".into());
    }
    Ok(())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;

    use tonic::Status;

    use super::*;

    /// Runs openssl (on PATH, as the black-box tests need it too).
    fn openssl(args: &[&str]) {
        let out = Command::new("openssl").args(args).output().expect("openssl on PATH");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Key files, generated once per test in its own directory.
    struct Keys {
        dir: tempfile::TempDir,
    }

    impl Keys {
        fn new() -> Keys {
            Keys { dir: tempfile::tempdir().unwrap() }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// A private key of `kind` ("rsa", "p256", "p384", "p521",
        /// "ed25519") in its usual openssl form, and its public key.
        fn pair(&self, kind: &str, name: &str) -> (PathBuf, PathBuf) {
            let (private, public) =
                (self.path(&format!("{name}.key")), self.path(&format!("{name}.pub")));
            let p = private.to_str().unwrap();
            match kind {
                "rsa" => openssl(&[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    p,
                ]),
                "ed25519" => openssl(&["genpkey", "-algorithm", "ed25519", "-out", p]),
                curve => {
                    let name = match curve {
                        "p256" => "prime256v1",
                        "p384" => "secp384r1",
                        _ => "secp521r1",
                    };
                    // SEC1 "EC PRIVATE KEY", as most guides make them.
                    openssl(&["ecparam", "-name", name, "-genkey", "-noout", "-out", p]);
                }
            }
            openssl(&["pkey", "-in", p, "-pubout", "-out", public.to_str().unwrap()]);
            (private, public)
        }

        fn secret(&self, name: &str, text: &str) -> PathBuf {
            let path = self.path(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    fn opts(method: &str, private: Option<&PathBuf>, public: Option<&PathBuf>) -> JwtOptions {
        JwtOptions {
            sign_method: method.into(),
            public_key: public.cloned(),
            private_key: private.cloned(),
            ttl: Duration::from_secs(300),
        }
    }

    /// Signs with both keys, with the private key alone, and verifies on a
    /// member holding the public key alone, which cannot sign.
    fn round_trip(method: &str, private: &PathBuf, public: &PathBuf) {
        let both = JwtTokens::load(&opts(method, Some(private), Some(public))).unwrap();
        assert!(!both.verify_only());
        let token = both.sign("alice", 7).unwrap();
        assert_eq!(both.verify(&token), Ok(("alice".into(), 7)), "{method}");

        let private_only = JwtTokens::load(&opts(method, Some(private), None)).unwrap();
        assert_eq!(private_only.verify(&token), Ok(("alice".into(), 7)), "{method}");
        let token = private_only.sign("bob", 9).unwrap();

        let verifier = JwtTokens::load(&opts(method, None, Some(public))).unwrap();
        assert!(verifier.verify_only());
        assert_eq!(verifier.verify(&token), Ok(("bob".into(), 9)), "{method}");
        assert!(matches!(verifier.sign("bob", 9), Err(Error::VerifyOnly)));
        assert_eq!(
            Status::from(Error::VerifyOnly).message(),
            "auth: token signing attempted with verify-only key"
        );
    }

    #[test]
    fn every_key_type_signs_and_verifies() {
        let keys = Keys::new();
        let (rsa, rsa_pub) = keys.pair("rsa", "rsa");
        for method in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] {
            round_trip(method, &rsa, &rsa_pub);
        }
        for (kind, method) in [("p256", "ES256"), ("p384", "ES384"), ("p521", "ES512")] {
            let (private, public) = keys.pair(kind, kind);
            round_trip(method, &private, &public);
        }
        let (ed, ed_pub) = keys.pair("ed25519", "ed");
        round_trip("EdDSA", &ed, &ed_pub);
    }

    #[test]
    fn hmac_uses_the_private_key_file_as_the_secret() {
        let keys = Keys::new();
        let secret = keys.secret("secret", "a shared secret\n");
        let other = keys.secret("other", "another secret\n");
        for method in ["HS256", "HS384", "HS512"] {
            let a = JwtTokens::load(&opts(method, Some(&secret), None)).unwrap();
            let b = JwtTokens::load(&opts(method, Some(&secret), None)).unwrap();
            let c = JwtTokens::load(&opts(method, Some(&other), None)).unwrap();
            let token = a.sign("root", 3).unwrap();
            assert_eq!(b.verify(&token), Ok(("root".into(), 3)));
            assert_eq!(c.verify(&token), Err("signature is invalid".into()));
        }
        let empty = keys.secret("empty", "");
        let err = JwtTokens::load(&opts("HS256", Some(&empty), None)).err().unwrap();
        assert_eq!(err, MISSING_KEY);
    }

    #[test]
    fn other_key_encodings_etcd_reads() {
        let keys = Keys::new();
        let (rsa, rsa_pub) = keys.pair("rsa", "rsa");
        // PKCS#1 private and public keys.
        let pkcs1 = keys.path("rsa1.key");
        let pkcs1_pub = keys.path("rsa1.pub");
        openssl(&[
            "rsa",
            "-in",
            rsa.to_str().unwrap(),
            "-traditional",
            "-out",
            pkcs1.to_str().unwrap(),
        ]);
        openssl(&[
            "rsa",
            "-in",
            rsa.to_str().unwrap(),
            "-RSAPublicKey_out",
            "-out",
            pkcs1_pub.to_str().unwrap(),
        ]);
        assert!(std::fs::read_to_string(&pkcs1).unwrap().contains("BEGIN RSA PRIVATE KEY"));
        assert!(std::fs::read_to_string(&pkcs1_pub).unwrap().contains("BEGIN RSA PUBLIC KEY"));
        round_trip("RS256", &pkcs1, &rsa_pub);
        round_trip("RS256", &rsa, &pkcs1_pub);
        // A PKCS#8 EC private key, and one after its "EC PARAMETERS".
        let (ec, ec_pub) = keys.pair("p256", "ec");
        let pkcs8 = keys.path("ec8.key");
        openssl(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            ec.to_str().unwrap(),
            "-out",
            pkcs8.to_str().unwrap(),
        ]);
        round_trip("ES256", &pkcs8, &ec_pub);
        let with_params = keys.path("ecp.key");
        openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            with_params.to_str().unwrap(),
        ]);
        let t = JwtTokens::load(&opts("ES256", Some(&with_params), None)).unwrap();
        assert!(t.verify(&t.sign("u", 1).unwrap()).is_ok());
        // A certificate as the public key.
        let cert = keys.path("rsa.crt");
        openssl(&[
            "req",
            "-new",
            "-x509",
            "-key",
            rsa.to_str().unwrap(),
            "-subj",
            "/CN=jwt",
            "-days",
            "1",
            "-out",
            cert.to_str().unwrap(),
        ]);
        round_trip("PS256", &rsa, &cert);
    }

    #[test]
    fn bad_keys_are_refused_with_etcds_errors() {
        let keys = Keys::new();
        let (rsa, rsa_pub) = keys.pair("rsa", "rsa");
        let (rsa2, rsa2_pub) = keys.pair("rsa", "rsa2");
        let (ec, ec_pub) = keys.pair("p256", "ec");
        let (ec2, _) = keys.pair("p256", "ec2");
        let (p521, _) = keys.pair("p521", "p521");
        let (p521b, p521b_pub) = keys.pair("p521", "p521b");
        let (ed, _) = keys.pair("ed25519", "ed");
        let (_, ed2_pub) = keys.pair("ed25519", "ed2");
        let err = |m: &str, private: Option<&PathBuf>, public: Option<&PathBuf>| {
            JwtTokens::load(&opts(m, private, public)).err().unwrap_or_else(|| panic!("{m} loaded"))
        };
        assert_eq!(err("RS256", Some(&rsa), Some(&rsa2_pub)), KEY_MISMATCH);
        assert_eq!(err("PS512", Some(&rsa2), Some(&rsa_pub)), KEY_MISMATCH);
        assert_eq!(err("ES256", Some(&ec2), Some(&ec_pub)), KEY_MISMATCH);
        assert_eq!(err("ES512", Some(&p521), Some(&p521b_pub)), KEY_MISMATCH);
        assert_eq!(err("EdDSA", Some(&ed), Some(&ed2_pub)), KEY_MISMATCH);
        assert_eq!(err("RS256", None, None), MISSING_KEY);
        let e = err("RS256", Some(&ec), None);
        assert!(e.contains("key is not a valid RSA private key"), "{e}");
        let e = err("ES256", Some(&rsa), None);
        assert!(e.contains("key is not a valid ECDSA private key"), "{e}");
        let e = err("ES384", Some(&ec), None);
        assert!(e.contains("ECDSA private key"), "{e}");
        let e = err("ES384", None, Some(&ec_pub));
        assert!(e.contains("does not suit ES384"), "{e}");
        let e = err("EdDSA", None, Some(&rsa_pub));
        assert!(e.contains("key is not a valid Ed25519 public key"), "{e}");
        let junk = keys.secret("junk", "not a key");
        let e = err("ES512", Some(&junk), None);
        assert!(e.contains("Key must be a PEM encoded PKCS1 or PKCS8 key"), "{e}");
        let _ = p521b;
    }

    #[test]
    fn tokens_are_refused_as_golang_jwt_refuses_them() {
        let keys = Keys::new();
        let secret = keys.secret("secret", "s");
        let hs = JwtTokens::load(&opts("HS256", Some(&secret), None)).unwrap();
        let (ed, _) = keys.pair("ed25519", "ed");
        let eddsa = JwtTokens::load(&opts("EdDSA", Some(&ed), None)).unwrap();
        let token = hs.sign("alice", 2).unwrap();

        // Another method's token, whatever its signature.
        assert_eq!(eddsa.verify(&token), Err("invalid signing method".into()));
        assert_eq!(
            hs.verify(&eddsa.sign("alice", 2).unwrap()),
            Err("invalid signing method".into())
        );
        // alg "none".
        let (_, payload) = token.split_once('.').unwrap();
        let none = format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), payload);
        assert!(hs.verify(&none).is_err());
        // A changed payload.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(r#"{"exp":9999999999,"revision":2,"username":"root"}"#);
        assert_eq!(
            hs.verify(&format!("{head}.{forged}.{sig}")),
            Err("signature is invalid".into())
        );
        // Garbage.
        for bad in ["", "a", "a.b", "a.b.c", "a.b.c.d", &format!("{token}x")] {
            assert!(hs.verify(bad).is_err(), "{bad:?}");
        }
        // Claims etcd needs.
        let sign = |claims: &str| hs.sign_claims(claims.as_bytes()).unwrap();
        assert_eq!(hs.verify(&sign(r#"{"revision":1,"username":"a"}"#)), Ok(("a".into(), 1)));
        assert_eq!(hs.verify(&sign(r#"{"revision":3.0,"username":"a"}"#)), Ok(("a".into(), 3)));
        assert!(hs.verify(&sign(r#"{"revision":"1","username":"a"}"#)).is_err());
        assert!(hs.verify(&sign(r#"{"revision":1,"username":7}"#)).is_err());
        assert!(hs.verify(&sign(r#"{"revision":1}"#)).is_err());
        assert!(hs.verify(&sign(r#"{"exp":"soon","revision":1,"username":"a"}"#)).is_err());
    }

    #[test]
    fn a_token_expires_at_its_exp() {
        let keys = Keys::new();
        let secret = keys.secret("secret", "s");
        let mut o = opts("HS256", Some(&secret), None);
        o.ttl = Duration::ZERO;
        let t = JwtTokens::load(&o).unwrap();
        // exp is now (whole seconds): golang-jwt wants now < exp.
        assert_eq!(t.verify(&t.sign("a", 1).unwrap()), Err("token is expired".into()));

        let claims = |text: &str| -> Map<String, Value> { serde_json::from_str(text).unwrap() };
        let exp = claims(r#"{"exp":100}"#);
        assert!(check_times(&exp, 99.999).is_ok());
        assert!(check_times(&exp, 100.0).is_err());
        // Fractions of a second are dropped, as golang-jwt's NumericDate does.
        assert!(check_times(&claims(r#"{"exp":100.9}"#), 100.5).is_err());
        let nbf = claims(r#"{"nbf":100}"#);
        assert!(check_times(&nbf, 99.5).is_err());
        assert!(check_times(&nbf, 100.0).is_ok());
        assert!(check_times(&claims("{}"), 0.0).is_ok());
        assert!(check_times(&claims(r#"{"exp":null}"#), 0.0).is_err());
    }

    #[test]
    fn the_payload_reads_as_etcds() {
        let keys = Keys::new();
        let secret = keys.secret("secret", "s");
        let t = JwtTokens::load(&opts("HS256", Some(&secret), None)).unwrap();
        let token = t.sign("alice", 12).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header, r#"{"alg":"HS256","typ":"JWT"}"#);
        let exp = unix_now().as_secs() + 300;
        assert!(
            payload == format!(r#"{{"exp":{exp},"revision":12,"username":"alice"}}"#)
                || payload == format!(r#"{{"exp":{},"revision":12,"username":"alice"}}"#, exp - 1),
            "{payload}"
        );
    }
}
