//! Tests of the parent module.

use relaykit_protocol::rest::AccessTokenHeader;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::*;

const NOW: u64 = 1_732_610_000;

fn issuer() -> TokenIssuer {
    TokenIssuer::new(SigningKey::generate(), "relaykit".into(), "relay".into(), 900, 30)
}

fn base(t: &TokenIssuer) -> AccessClaims {
    t.claims("usr_1", "dev_1", DeviceType::Desktop, "fam_1", NOW)
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// A token of `t` with header and claim overrides (the test hook).
fn with(t: &TokenIssuer, header: Value, claims: Value) -> String {
    t.mint_with_overrides(&base(t), &obj(header), &obj(claims))
}

fn claim(t: &TokenIssuer, name: &str, value: Value) -> Result<AccessClaims, TokenError> {
    t.verify(&with(t, json!({}), json!({ name: value })), NOW)
}

fn header_text(t: &TokenIssuer) -> String {
    Value::Object(t.header_object()).to_string()
}

fn claims_text(t: &TokenIssuer) -> String {
    Value::Object(claims_object(&base(t))).to_string()
}

/// Signs JSON texts exactly as given with `key`.
fn raw(key: &SigningKey, header: &str, claims: &str) -> String {
    let input = format!("{}.{}", b64url_encode(header.as_bytes()), b64url_encode(claims.as_bytes()));
    format!("{input}.{}", b64url_encode(&key.sign(input.as_bytes())))
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}

fn claim_err(name: &'static str) -> impl Fn(&Result<AccessClaims, TokenError>) -> bool {
    move |r| matches!(r, Err(TokenError::Claim { name: n, .. }) if *n == name)
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(message).finalize();
    Sha256::new().chain_update(&opad).chain_update(inner).finalize().into()
}

#[test]
fn round_trip_with_the_exact_header() {
    let t = issuer();
    let claims = base(&t);
    let token = t.mint(&claims);
    assert_eq!(t.verify(&token, NOW), Ok(claims.clone()));
    let s = segments(&token);
    assert_eq!(s.len(), 3);
    assert!(!token.contains('='));
    let header: Value = serde_json::from_slice(&b64url_decode(&s[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "EdDSA", "typ": "at+jwt", "kid": t.key().kid()}));
    let typed: AccessTokenHeader = serde_json::from_value(header).unwrap();
    assert_eq!(typed.kid, t.key().kid());
    let decoded: AccessClaims = serde_json::from_slice(&b64url_decode(&s[1]).unwrap()).unwrap();
    assert_eq!(decoded, claims);
    assert_eq!(b64url_decode(&s[2]).unwrap().len(), 64);
    assert_eq!(t.jwks().keys, vec![t.key().jwk()]);
}

#[test]
fn claims_of_a_fresh_token() {
    let t = issuer();
    let a = t.claims("u", "d", DeviceType::Mobile, "f", NOW);
    let b = t.claims("u", "d", DeviceType::Mobile, "f", NOW);
    assert_eq!((a.iss.as_str(), a.aud.as_str()), ("relaykit", "relay"));
    assert_eq!((a.sub.as_str(), a.did.as_str(), a.fam.as_str()), ("u", "d", "f"));
    assert_eq!((a.iat, a.nbf, a.exp, a.dty), (NOW, NOW, NOW + 900, DeviceType::Mobile));
    assert!(is_valid_id(&a.jti));
    assert_ne!(a.jti, b.jti);
}

#[test]
fn new_clamps_ttl_and_leeway() {
    let t = TokenIssuer::new(SigningKey::generate(), "i".into(), "a".into(), 7200, 120);
    assert_eq!((t.access_ttl_s(), t.leeway_s()), (3600, 60));
    let t = TokenIssuer::new(SigningKey::generate(), "i".into(), "a".into(), 0, 0);
    assert_eq!((t.access_ttl_s(), t.leeway_s()), (1, 0));
    let c = t.claims("u", "d", DeviceType::Mobile, "f", NOW);
    assert!(t.verify(&t.mint(&c), NOW).is_ok());
}

#[test]
fn alg_none_with_empty_signature_is_rejected() {
    let t = issuer();
    let header = header_text(&t).replace("EdDSA", "none");
    let token =
        format!("{}.{}.", b64url_encode(header.as_bytes()), b64url_encode(claims_text(&t).as_bytes()));
    assert_eq!(t.verify(&token, NOW), Err(TokenError::Algorithm("\"none\"".into())));
}

#[test]
fn every_other_alg_is_rejected() {
    let t = issuer();
    for alg in ["none", "HS256", "RS256", "ES256", "PS256", "eddsa", "EDDSA", "Ed25519", "EdDSA ", ""] {
        let r = t.verify(&with(&t, json!({ "alg": alg }), json!({})), NOW);
        assert!(matches!(r, Err(TokenError::Algorithm(_))), "{alg}: {r:?}");
    }
    for (alg, text) in
        [(json!(null), "missing"), (json!(1), "not a string"), (json!(["EdDSA"]), "not a string")]
    {
        let r = t.verify(&with(&t, json!({ "alg": alg }), json!({})), NOW);
        assert_eq!(r, Err(TokenError::Algorithm(text.into())));
    }
    let r = t.verify(&with(&t, json!({ "alg": format!("\n{}", "x".repeat(100)) }), json!({})), NOW);
    let Err(TokenError::Algorithm(text)) = r else { panic!("{r:?}") };
    assert!(text.len() < 50 && !text.contains('\n'), "{text}");
}

#[test]
fn hmac_helper_matches_rfc4231() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(b64url_encode(&mac), "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM");
}

#[test]
fn hs256_keyed_with_the_public_key_is_rejected() {
    let t = issuer();
    let jwk = t.key().jwk();
    let header = header_text(&t).replace("EdDSA", "HS256");
    let input = format!("{}.{}", b64url_encode(header.as_bytes()), b64url_encode(claims_text(&t).as_bytes()));
    let jwk_json = serde_json::to_string(&jwk).unwrap();
    let secrets = [b64url_decode(&jwk.x).unwrap(), jwk.x.clone().into_bytes(), jwk_json.into_bytes()];
    for secret in secrets {
        let token = format!("{input}.{}", b64url_encode(&hmac_sha256(&secret, input.as_bytes())));
        assert_eq!(t.verify(&token, NOW), Err(TokenError::Algorithm("\"HS256\"".into())));
    }
}

#[test]
fn typ_must_be_exactly_at_jwt() {
    let t = issuer();
    for typ in
        [json!("JWT"), json!("AT+JWT"), json!("at+JWT"), json!("application/at+jwt"), json!(null), json!(1)]
    {
        assert_eq!(
            t.verify(&with(&t, json!({ "typ": typ }), json!({})), NOW),
            Err(TokenError::Type),
            "{typ}"
        );
    }
}

#[test]
fn kid_must_name_the_relay_key() {
    let t = issuer();
    let kid_space = format!("{} ", t.key().kid());
    for kid in [json!(null), json!("other"), json!(5), json!(kid_space), json!([t.key().kid()])] {
        let r = t.verify(&with(&t, json!({ "kid": kid }), json!({})), NOW);
        assert_eq!(r, Err(TokenError::UnknownKey), "{kid}");
    }
    let other = issuer();
    assert_eq!(t.verify(&other.mint(&base(&other)), NOW), Err(TokenError::UnknownKey));
}

#[test]
fn crit_is_rejected() {
    let t = issuer();
    for crit in [json!(["exp"]), json!([]), json!("b64")] {
        let r = t.verify(&with(&t, json!({ "crit": crit }), json!({})), NOW);
        assert_eq!(r, Err(TokenError::Critical), "{crit}");
    }
}

#[test]
fn header_checks_run_in_table_order() {
    let t = issuer();
    let all_bad = json!({"alg": "none", "typ": "JWT", "kid": "x", "crit": []});
    assert!(matches!(t.verify(&with(&t, all_bad, json!({})), NOW), Err(TokenError::Algorithm(_))));
    let r = t.verify(&with(&t, json!({"typ": "JWT", "kid": "x", "crit": []}), json!({})), NOW);
    assert_eq!(r, Err(TokenError::Type));
    let r = t.verify(&with(&t, json!({"kid": "x", "crit": []}), json!({})), NOW);
    assert_eq!(r, Err(TokenError::UnknownKey));
}

#[test]
fn key_pointing_header_members_are_ignored() {
    let t = issuer();
    let attacker = SigningKey::from_seed(&[7; 32], t.key().kid().to_string());
    let pointers = json!({"jwk": attacker.jwk(), "jku": "https://evil.example/jwks", "x5u": "https://e",
        "x5c": ["AAAA"], "extra": {"a": 1}});
    // Signed by the relay: the extra members change nothing.
    assert!(t.verify(&with(&t, pointers.clone(), json!({})), NOW).is_ok());
    // Signed by the key the header points to: still verified with the relay's key only.
    let mut header = obj(json!({"alg": "EdDSA", "typ": "at+jwt", "kid": t.key().kid()}));
    header.extend(obj(pointers));
    let token = raw(&attacker, &Value::Object(header).to_string(), &claims_text(&t));
    assert_eq!(t.verify(&token, NOW), Err(TokenError::Signature));
}

#[test]
fn signature_covers_the_segments_as_received() {
    let t = issuer();
    let token = t.mint(&base(&t));
    let s = segments(&token);
    // Other claims under the original signature.
    let forged = claims_text(&t).replace("usr_1", "usr_2");
    let tampered = format!("{}.{}.{}", s[0], b64url_encode(forged.as_bytes()), s[2]);
    assert_eq!(t.verify(&tampered, NOW), Err(TokenError::Signature));
    // The same header JSON spelled differently is a different signing input.
    let spaced = header_text(&t).replace(':', ": ");
    let respelled = format!("{}.{}.{}", b64url_encode(spaced.as_bytes()), s[1], s[2]);
    assert_eq!(t.verify(&respelled, NOW), Err(TokenError::Signature));
    // A signature of a differently spelled header verifies: only the received text matters.
    assert!(t.verify(&raw(&t.key, &spaced, &claims_text(&t)), NOW).is_ok());
}

#[test]
fn tampered_truncated_or_foreign_signatures_are_rejected() {
    let t = issuer();
    let token = t.mint(&base(&t));
    let s = segments(&token);
    let sig = b64url_decode(&s[2]).unwrap();
    for i in [0, 31, 32, 63] {
        let mut bad = sig.clone();
        bad[i] ^= 0x01;
        let forged = format!("{}.{}.{}", s[0], s[1], b64url_encode(&bad));
        assert_eq!(t.verify(&forged, NOW), Err(TokenError::Signature), "byte {i}");
    }
    for bad in [&sig[..63], &[][..], &[sig.as_slice(), &[0]].concat()[..]] {
        let forged = format!("{}.{}.{}", s[0], s[1], b64url_encode(bad));
        assert_eq!(t.verify(&forged, NOW), Err(TokenError::Signature), "len {}", bad.len());
    }
    let same_kid = SigningKey::from_seed(&[9; 32], t.key().kid().to_string());
    let foreign = raw(&same_kid, &header_text(&t), &claims_text(&t));
    assert_eq!(t.verify(&foreign, NOW), Err(TokenError::Signature));
}

#[test]
fn claims_of_the_wrong_json_type_or_format() {
    let t = issuer();
    let cases = [
        ("exp", json!("1732610900")),
        ("exp", json!(1.5)),
        ("iat", json!(1732610000.0)),
        ("nbf", json!(-1)),
        ("exp", json!(9007199254740992u64)),
        ("exp", json!(true)),
        ("iat", json!([NOW])),
        ("aud", json!(["relay"])),
        ("iss", json!(5)),
        ("iss", json!({"v": "relaykit"})),
        ("sub", json!("has space")),
        ("sub", json!("")),
        ("did", json!("d".repeat(65))),
        ("did", json!(1)),
        ("fam", json!("famé")),
        ("jti", json!("a/b")),
        ("dty", json!("tablet")),
        ("dty", json!("Mobile")),
        ("dty", json!(0)),
    ];
    for (name, value) in cases {
        let r = claim(&t, name, value.clone());
        assert!(claim_err(name)(&r), "{name} = {value}: {r:?}");
    }
    // Integer spellings that serde_json would otherwise read as numbers.
    let claims = claims_text(&t);
    let exp = format!("\"exp\":{}", NOW + 900);
    for spelled in ["1732610900e0", "1.7326109e9", "1732610900.0", "-0", "1E3"] {
        let token = raw(&t.key, &header_text(&t), &claims.replace(&exp, &format!("\"exp\":{spelled}")));
        assert!(claim_err("exp")(&t.verify(&token, NOW)), "{spelled}");
    }
    // 2^53-1 is an integer; here it only breaks the lifetime rule.
    assert_eq!(claim(&t, "exp", json!(9007199254740991u64)), Err(TokenError::Lifetime));
    assert_eq!(claim(&t, "dty", json!("mobile")).map(|c| c.dty), Ok(DeviceType::Mobile));
}

#[test]
fn every_claim_is_required() {
    let t = issuer();
    for name in ["iss", "aud", "sub", "did", "dty", "fam", "jti", "iat", "nbf", "exp"] {
        let r = claim(&t, name, Value::Null);
        assert_eq!(r, Err(TokenError::Claim { name, reason: "missing".into() }));
    }
    assert!(claim(&t, "scope", json!("extra claims are ignored")).is_ok());
}

#[test]
fn issuer_and_audience_must_match() {
    let t = issuer();
    assert_eq!(claim(&t, "iss", json!("other")), Err(TokenError::Issuer));
    assert_eq!(claim(&t, "iss", json!("")), Err(TokenError::Issuer));
    assert_eq!(claim(&t, "aud", json!("Relay")), Err(TokenError::Audience));
    let both = with(&t, json!({}), json!({"iss": "x", "aud": "y"}));
    assert_eq!(t.verify(&both, NOW), Err(TokenError::Issuer));
}

#[test]
fn not_before_and_issued_at_leeway_boundaries() {
    let t = issuer();
    let at = |iat: u64, nbf: u64| {
        t.verify(&with(&t, json!({}), json!({"iat": iat, "nbf": nbf, "exp": iat + 900})), NOW)
    };
    assert!(at(NOW, NOW + 30).is_ok());
    assert_eq!(at(NOW, NOW + 31), Err(TokenError::NotYetValid));
    assert!(at(NOW + 30, NOW).is_ok());
    assert_eq!(at(NOW + 31, NOW), Err(TokenError::IssuedInFuture));
    assert_eq!(at(NOW + 31, NOW + 31), Err(TokenError::NotYetValid));
    let strict = TokenIssuer::new(t.key().clone(), "relaykit".into(), "relay".into(), 900, 0);
    let token = with(&t, json!({}), json!({"nbf": NOW + 1}));
    assert_eq!(strict.verify(&token, NOW), Err(TokenError::NotYetValid));
    assert!(strict.verify(&token, NOW + 1).is_ok());
}

#[test]
fn lifetime_must_be_positive_and_at_most_an_hour() {
    let t = issuer();
    let life = |exp: u64| t.verify(&with(&t, json!({}), json!({ "exp": exp })), NOW);
    assert!(life(NOW + 3600).is_ok());
    assert!(life(NOW + 1).is_ok());
    assert_eq!(life(NOW + 3601), Err(TokenError::Lifetime));
    assert_eq!(life(NOW), Err(TokenError::Lifetime));
    assert_eq!(life(NOW - 1), Err(TokenError::Lifetime));
    let zero = with(&t, json!({}), json!({"iat": 0, "nbf": 0, "exp": 0}));
    assert_eq!(t.verify(&zero, NOW), Err(TokenError::Lifetime));
}

#[test]
fn expiry_leeway_boundaries_and_split_checks() {
    let t = issuer();
    let claims = base(&t);
    let token = t.mint(&claims);
    let exp = claims.exp;
    assert!(t.verify(&token, exp + 29).is_ok());
    assert_eq!(t.verify(&token, exp + 30), Err(TokenError::Expired));
    assert_eq!(t.verify(&token, u64::MAX), Err(TokenError::Expired));
    assert_eq!(t.verify(&token, 0), Err(TokenError::NotYetValid));
    assert_eq!(t.verify_before_expiry(&token, exp + 30), Ok(claims.clone()));
    assert_eq!(t.check_expiry(&claims, exp + 30), Err(TokenError::Expired));
    assert_eq!(t.check_expiry(&claims, exp + 29), Ok(()));
    let strict = TokenIssuer::new(t.key().clone(), "relaykit".into(), "relay".into(), 900, 0);
    assert!(strict.verify(&token, exp - 1).is_ok());
    assert_eq!(strict.verify(&token, exp), Err(TokenError::Expired));
    // Appendix A example: an expired but otherwise valid token from the test hook.
    let hook = with(&t, json!({}), json!({"iat": 1732610000u64, "nbf": 1732610000u64, "exp": 1732610900u64}));
    assert!(t.verify(&hook, 1732610929).is_ok());
    assert!(t.verify(&hook, 1732610930).unwrap_err().is_expired());
}

#[test]
fn expiry_is_reported_only_after_every_other_check() {
    let t = issuer();
    let old = json!({"iat": NOW - 5000, "nbf": NOW - 5000, "exp": NOW - 4100});
    assert_eq!(t.verify(&with(&t, json!({}), old.clone()), NOW), Err(TokenError::Expired));
    let mut wrong_aud = obj(old.clone());
    wrong_aud.insert("aud".into(), json!("other"));
    assert_eq!(t.verify(&with(&t, json!({}), Value::Object(wrong_aud)), NOW), Err(TokenError::Audience));
    let mut bad_type = obj(old.clone());
    bad_type.insert("sub".into(), json!(1));
    let token = with(&t, json!({}), Value::Object(bad_type));
    assert!(claim_err("sub")(&t.verify(&token, NOW)));
    let mut s = segments(&token);
    s[2] = s[2].replacen(|c: char| c != 'A', "A", 1);
    assert_eq!(t.verify(&s.join("."), NOW), Err(TokenError::Signature));
    assert!(matches!(t.verify(&with(&t, json!({"alg": "none"}), old), NOW), Err(TokenError::Algorithm(_))));
    for e in [TokenError::Type, TokenError::Signature, TokenError::Lifetime, TokenError::NotYetValid] {
        assert!(!e.is_expired());
    }
}

#[test]
fn malformed_tokens() {
    let t = issuer();
    let token = t.mint(&base(&t));
    let s = segments(&token);
    let enc = |text: &str| b64url_encode(text.as_bytes());
    let h = header_text(&t);
    let cases = [
        String::new(),
        ".".into(),
        "..".into(),
        format!("{}.{}", s[0], s[1]),
        format!("{token}."),
        format!("{token}.{}", s[2]),
        format!("{}=.{}.{}", s[0], s[1], s[2]),
        format!("{}.{}.{}==", s[0], s[1], s[2]),
        format!("+{}.{}.{}", s[0], s[1], s[2]),
        format!("{}.{}/.{}", s[0], s[1], s[2]),
        format!("{}.{} .{}", s[0], s[1], s[2]),
        format!("{}.{}.{}", enc("[]"), s[1], s[2]),
        format!("{}.{}.{}", enc("\"x\""), s[1], s[2]),
        format!("{}.{}.{}", enc("{"), s[1], s[2]),
        format!("{}.{}.{}", b64url_encode(&[0xff, 0xfe]), s[1], s[2]),
        format!("{}.{}.{}", s[0], enc("null"), s[2]),
        format!("{}.{}.{}", s[0], enc(&format!("{} {{}}", claims_text(&t))), s[2]),
        format!("{}.{}.{}", s[0], enc(r#"{"exp":1e400}"#), s[2]),
        raw(&t.key, &h.replacen('{', r#"{"alg":"none","#, 1), &claims_text(&t)),
        raw(&t.key, &h, &claims_text(&t).replacen('{', r#"{"exp":1,"#, 1)),
        format!("{}.{}.{}", s[0], enc(&"[".repeat(5000)), s[2]),
    ];
    for case in cases {
        let r = t.verify(&case, NOW);
        assert!(matches!(r, Err(TokenError::Malformed(_))), "{case:?}: {r:?}");
    }
}

#[test]
fn size_limit_is_8192_bytes() {
    let t = issuer();
    let padded =
        |n: usize, m: usize| with(&t, json!({ "pad": "p".repeat(n) }), json!({ "pad": "q".repeat(m) }));
    // Header padding grows the token by 4/3 byte per byte; start just below the target.
    let start = (MAX_TOKEN_LEN - padded(0, 0).len()) * 3 / 4 - 8;
    let sized = |len: usize| {
        (start..start + 16).flat_map(|n| (0..3).map(move |m| (n, m))).find_map(|(n, m)| {
            let token = padded(n, m);
            (token.len() == len).then_some(token)
        })
    };
    let at_limit = sized(MAX_TOKEN_LEN).unwrap();
    assert!(t.verify(&at_limit, NOW).is_ok());
    let over = sized(MAX_TOKEN_LEN + 1).unwrap();
    assert!(matches!(t.verify(&over, NOW), Err(TokenError::Malformed(_))));
}

#[test]
fn overrides_merge_and_are_always_ed25519_signed() {
    let t = issuer();
    let token = with(&t, json!({}), json!({"sub": "usr_9", "dty": "mobile"}));
    let c = t.verify(&token, NOW).unwrap();
    assert_eq!((c.sub.as_str(), c.dty, c.did.as_str()), ("usr_9", DeviceType::Mobile, "dev_1"));
    let token = with(&t, json!({"alg": "HS256", "typ": null}), json!({"jti": null}));
    let s = segments(&token);
    let header: Value = serde_json::from_slice(&b64url_decode(&s[0]).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "HS256", "kid": t.key().kid()}));
    let claims = obj(serde_json::from_slice(&b64url_decode(&s[1]).unwrap()).unwrap());
    assert!(!claims.contains_key("jti") && claims.len() == 9);
    let sig = b64url_decode(&s[2]).unwrap();
    assert!(t.key().verify(format!("{}.{}", s[0], s[1]).as_bytes(), &sig));
    assert_eq!(t.verify(&with(&t, json!({"typ": "JWT"}), json!({})), NOW), Err(TokenError::Type));
}
