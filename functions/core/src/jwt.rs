//! HS256 JSON Web Tokens, as `tm-local` uses them to play API Gateway's JWT authorizer.
//! The algorithm is pinned: a token whose header names anything but HS256 (`none`
//! included) is refused before its signature is looked at.

use crate::Error;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Allowed clock skew when checking `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 60;

fn signer(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| {
        // HMAC accepts keys of any length.
        HmacSha256::new_from_slice(b"k").expect("HMAC takes any key length")
    })
}

/// Signs `claims` with HS256.
pub fn mint(secret: &[u8], claims: &Map<String, Value>) -> String {
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(Value::Object(claims.clone()).to_string());
    let signing_input = format!("{header}.{payload}");
    let mut m = signer(secret);
    m.update(signing_input.as_bytes());
    let sig = B64.encode(m.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Verifies an HS256 token at time `now` (seconds since the epoch) and returns its claims.
/// Every failure is 401 with a message that does not echo the token; a header or payload
/// that repeats a key, or an `nbf` that is not an integer, is such a failure.
pub fn verify(secret: &[u8], token: &str, now: i64) -> Result<Map<String, Value>, Error> {
    let unauthorized = |why: &str| Error::Unauthorized(why.to_owned());
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unauthorized("malformed token"));
    };
    let header: Value = B64
        .decode(h)
        .ok()
        .and_then(|b| crate::strict_json::from_slice(&b).ok())
        .ok_or_else(|| unauthorized("malformed token header"))?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(unauthorized("token algorithm not accepted"));
    }
    let sig = B64
        .decode(s)
        .map_err(|_| unauthorized("malformed token signature"))?;
    let mut m = signer(secret);
    m.update(h.as_bytes());
    m.update(b".");
    m.update(p.as_bytes());
    m.verify_slice(&sig)
        .map_err(|_| unauthorized("bad token signature"))?;
    let claims: Map<String, Value> = B64
        .decode(p)
        .ok()
        .and_then(|b| crate::strict_json::from_slice(&b).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .ok_or_else(|| unauthorized("malformed token payload"))?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| unauthorized("token has no exp"))?;
    if now > exp.saturating_add(LEEWAY_SECS) {
        return Err(unauthorized("token expired"));
    }
    // `nbf` is optional, but when present it must be an integer: a string or a fraction
    // is not "no restriction".
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf
            .as_i64()
            .ok_or_else(|| unauthorized("token nbf is not an integer"))?;
        if now.saturating_add(LEEWAY_SECS) < nbf {
            return Err(unauthorized("token not yet valid"));
        }
    }
    Ok(claims)
}

/// Claims as API Gateway hands them to a function: every value a string.
pub fn claims_as_strings(claims: &Map<String, Value>) -> Vec<(String, String)> {
    claims
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(exp: i64) -> Map<String, Value> {
        json!({"sub": "u", "scope": "routes:read", "tm_tenants": "acme", "exp": exp})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn a_minted_token_verifies() {
        let t = mint(b"s", &claims(1000));
        assert_eq!(verify(b"s", &t, 1000).unwrap()["sub"], "u");
        assert!(verify(b"s", &t, 1060).is_ok(), "within leeway");
    }

    #[test]
    fn expired_wrong_key_or_tampered_tokens_are_401() {
        let t = mint(b"s", &claims(1000));
        assert!(matches!(
            verify(b"s", &t, 1061),
            Err(Error::Unauthorized(_))
        ));
        assert!(matches!(
            verify(b"other", &t, 1000),
            Err(Error::Unauthorized(_))
        ));
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(json!({"sub": "admin", "exp": 9999999999i64}).to_string());
        parts[1] = &forged;
        assert!(matches!(
            verify(b"s", &parts.join("."), 1000),
            Err(Error::Unauthorized(_))
        ));
    }

    #[test]
    fn alg_none_and_missing_exp_are_refused() {
        let header = B64.encode(br#"{"alg":"none"}"#);
        let payload = B64.encode(json!({"sub": "u", "exp": 9999999999i64}).to_string());
        assert!(verify(b"s", &format!("{header}.{payload}."), 0).is_err());
        let mut c = claims(0);
        c.remove("exp");
        assert!(verify(b"s", &mint(b"s", &c), 0).is_err());
    }

    /// A token signed over exactly these header and payload texts.
    fn signed(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let mut m = signer(secret);
        m.update(input.as_bytes());
        format!("{input}.{}", B64.encode(m.finalize().into_bytes()))
    }

    #[test]
    fn a_header_or_payload_with_a_repeated_key_is_401_even_when_signed() {
        let ok_header = r#"{"alg":"HS256","typ":"JWT"}"#;
        let ok_payload = r#"{"sub":"u","exp":2000}"#;
        assert!(verify(b"s", &signed(b"s", ok_header, ok_payload), 1000).is_ok());
        let dup_header = r#"{"alg":"none","alg":"HS256"}"#;
        let dup_payload = r#"{"sub":"u","tm_tenants":"a","tm_tenants":"*","exp":2000}"#;
        for token in [
            signed(b"s", dup_header, ok_payload),
            signed(b"s", ok_header, dup_payload),
        ] {
            assert!(matches!(
                verify(b"s", &token, 1000),
                Err(Error::Unauthorized(_))
            ));
        }
    }

    #[test]
    fn an_nbf_that_is_not_an_integer_is_401() {
        let header = r#"{"alg":"HS256","typ":"JWT"}"#;
        for nbf in [r#""0""#, "1.5", "null", "[]", "true"] {
            let payload = format!(r#"{{"sub":"u","exp":2000,"nbf":{nbf}}}"#);
            assert!(
                matches!(
                    verify(b"s", &signed(b"s", header, &payload), 1000),
                    Err(Error::Unauthorized(_))
                ),
                "nbf {nbf}"
            );
        }
        let payload = r#"{"sub":"u","exp":2000,"nbf":900}"#;
        assert!(verify(b"s", &signed(b"s", header, payload), 1000).is_ok());
    }

    #[test]
    fn garbage_is_401_not_a_panic() {
        for t in ["", ".", "..", "a.b.c", "a.b.c.d", "eyJ.eyJ.x"] {
            assert!(
                matches!(verify(b"s", t, 0), Err(Error::Unauthorized(_))),
                "{t}"
            );
        }
    }
}
