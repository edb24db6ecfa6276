//! Tests of the parent module.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load(None, env(pairs))
}

fn invalid_key(config: &Config) -> String {
    match config.validate() {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn defaults_validate_and_match_the_brief() {
    let config = Config::default();
    config.validate().unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(config.limits, Limits::default());
    assert_eq!((config.auth.access_ttl_s, config.auth.leeway_s), (900, 30));
    assert_eq!(Config::from_toml_str("").unwrap(), config);
    assert_eq!(load_env(&[("HOME", "/x"), ("PATH", "/bin")]).unwrap(), config);
}

#[test]
fn partial_tables_keep_other_defaults() {
    let text = "listen = \"0.0.0.0:9000\"\n[limits]\nmax_payload_bytes = 1024\n[auth]\naccess_ttl_s = 600\n";
    let config = Config::from_toml_str(text).unwrap();
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.limits.max_payload_bytes, 1024);
    assert_eq!(config.limits.max_frame_bytes, Limits::default().max_frame_bytes);
    assert_eq!(config.auth.access_ttl_s, 600);
    assert_eq!(config.auth.issuer, "relaykit");
    assert!(config.registration_open);
    config.validate().unwrap();
}

#[test]
fn unknown_keys_are_named() {
    for (text, key) in [
        ("bogus = 1\n", "bogus"),
        ("[limits]\nmax_payload_bytes = 1\nmax_paylod_bytes = 2\n", "max_paylod_bytes"),
        ("[auth]\nissuer = \"a\"\nttl = 3\n", "ttl"),
    ] {
        let err = Config::from_toml_str(text).unwrap_err();
        assert!(matches!(err, ConfigError::Toml { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }
}

#[test]
fn errors_report_line_and_column() {
    let err = Config::from_toml_str("listen = \"127.0.0.1:1\"\nephemeral = tru\n").unwrap_err();
    let ConfigError::Toml { line, column, .. } = &err else { panic!("{err:?}") };
    assert_eq!((*line, *column), (Some(2), Some(13)));
    assert!(err.to_string().contains("line 2, column 13"), "{err}");
    // Type errors inside [limits] still point into the file and name the key.
    let err = Config::from_toml_str("ephemeral = true\n[limits]\nmax_in_flight = \"x\"\n").unwrap_err();
    let ConfigError::Toml { line: Some(line), .. } = &err else { panic!("{err:?}") };
    assert!(*line >= 2, "{err}");
    assert!(err.to_string().contains("max_in_flight"), "{err}");
    assert_eq!(line_column("a\néé=", 6), (2, 3));
    assert_eq!(line_column("a\néé=", 5), (2, 2));
    assert_eq!(line_column("ab", 99), (1, 3));
}

#[test]
fn file_then_env_overrides() {
    let dir = std::env::temp_dir().join(format!("relaykit-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("relaykit.toml");
    std::fs::write(&path, "registration_open = false\n[limits]\nmax_payload_bytes = 2048\n").unwrap();
    let config =
        Config::load(Some(&path), env(&[("RELAYKIT_LIMITS__MAX_IN_FLIGHT", "7"), ("RELAYKIT_CONFIG", "x")]))
            .unwrap();
    assert!(!config.registration_open);
    assert_eq!((config.limits.max_payload_bytes, config.limits.max_in_flight), (2048, 7));
    let err = Config::load(Some(&dir.join("missing.toml")), env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }) && err.to_string().contains("missing.toml"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn env_overrides_nested_top_level_and_lists() {
    let config = load_env(&[
        ("RELAYKIT_LIMITS__MAX_PAYLOAD_BYTES", "1024"),
        ("RELAYKIT_LISTEN", "0.0.0.0:9000"),
        ("RELAYKIT_REGISTRATION_OPEN", "false"),
        ("RELAYKIT_ALLOWED_ORIGINS", "https://a.example, https://b.example"),
        ("RELAYKIT_AUTH__ISSUER", "12345"),
        ("RELAYKIT_DATA_DIR", "/var/lib/relaykit"),
    ])
    .unwrap();
    assert_eq!(config.limits.max_payload_bytes, 1024);
    assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
    assert!(!config.registration_open);
    assert_eq!(config.allowed_origins, ["https://a.example", "https://b.example"]);
    assert_eq!(config.auth.issuer, "12345");
    assert_eq!(config.data_dir, Some(PathBuf::from("/var/lib/relaykit")));
    let config = load_env(&[("RELAYKIT_ALLOWED_ORIGINS", r#"["https://c.example"]"#)]).unwrap();
    assert_eq!(config.allowed_origins, ["https://c.example"]);
    assert!(load_env(&[("RELAYKIT_ALLOWED_ORIGINS", "")]).unwrap().allowed_origins.is_empty());
}

#[test]
fn env_errors_name_the_variable() {
    for pairs in [
        [("RELAYKIT_BOGUS", "1")],
        [("RELAYKIT_LIMITS__BOGUS", "1")],
        [("RELAYKIT_LISTEN__PORT", "1")],
        [("RELAYKIT_A__B__C", "1")],
    ] {
        let err = load_env(&pairs).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownEnv { .. }), "{err:?}");
        assert!(err.to_string().contains(pairs[0].0), "{err}");
    }
    for (var, value) in [
        ("RELAYKIT_LIMITS__MAX_IN_FLIGHT", "many"),
        ("RELAYKIT_LIMITS__MAX_IN_FLIGHT", "-1"),
        ("RELAYKIT_EPHEMERAL", "yes"),
        ("RELAYKIT_LISTEN", "not an address"),
        ("RELAYKIT_LIMITS", "1"),
    ] {
        let err = load_env(&[(var, value)]).unwrap_err();
        assert!(matches!(&err, ConfigError::Env { var: v, .. } if v == var), "{err:?}");
    }
    // load validates: an override breaking LIM-1 is rejected with the key.
    let err = load_env(&[("RELAYKIT_LIMITS__MAX_PAYLOAD_BYTES", "69000")]).unwrap_err();
    assert!(err.to_string().contains("limits.max_frame_bytes"), "{err}");
}

#[test]
fn invalid_combinations_are_rejected_with_their_key() {
    type Breaker = fn(&mut Config);
    let cases: [(Breaker, &str); 15] = [
        (|c| c.limits.max_frame_bytes = c.limits.max_payload_bytes + 4095, "limits.max_frame_bytes"),
        (|c| c.limits.ttl_min_ms = c.limits.ttl_default_ms + 1, "limits.ttl_default_ms"),
        (|c| c.limits.ttl_min_ms = c.limits.ttl_max_ms + 1, "limits.ttl_min_ms"),
        (|c| c.limits.max_attempts_default = 101, "limits.max_attempts_default"),
        (|c| c.limits.heartbeat_ms = 0, "limits.heartbeat_ms"),
        (|c| c.limits.replay_window_ms = MAX_SAFE_INTEGER + 1, "limits.replay_window_ms"),
        (|c| c.auth.access_ttl_s = 3601, "auth.access_ttl_s"),
        (|c| c.auth.access_ttl_s = 0, "auth.access_ttl_s"),
        (|c| c.auth.leeway_s = 61, "auth.leeway_s"),
        (|c| c.auth.refresh_ttl_s = 0, "auth.refresh_ttl_s"),
        (|c| c.auth.issuer.clear(), "auth.issuer"),
        (|c| c.pairing_code_ttl_s = 601, "pairing_code_ttl_s"),
        (|c| c.group_commit_max_batch = 0, "group_commit_max_batch"),
        (|c| c.allowed_origins = vec!["https://a.example/".into()], "allowed_origins"),
        (|c| c.allowed_origins = vec!["a.example".into()], "allowed_origins"),
    ];
    for (breaker, key) in cases {
        let mut config = Config::default();
        breaker(&mut config);
        assert_eq!(invalid_key(&config), key);
    }
    // The boundaries themselves are accepted.
    let mut config = Config::default();
    config.limits.max_frame_bytes = config.limits.max_payload_bytes + 4096;
    (config.auth.access_ttl_s, config.auth.leeway_s, config.pairing_code_ttl_s) = (3600, 60, 600);
    config.allowed_origins = vec!["https://a.example".into(), "http://localhost:3000".into()];
    config.validate().unwrap();
}

#[test]
fn env_keys_cover_every_field() {
    // Every key a file may set is reachable from the environment: the serialized table has all
    // fields except the optional ones, which OPTIONAL_KEYS lists.
    let config = Config { data_dir: Some(PathBuf::from("/d")), ..Config::default() };
    let full = toml::Table::try_from(&config).unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut keys: Vec<&String> = defaults.keys().collect();
    keys.extend(OPTIONAL_KEYS.iter().filter_map(|k| full.get_key_value(*k).map(|(k, _)| k)));
    keys.sort();
    assert_eq!(keys, full.keys().collect::<Vec<_>>());
    // And a full round trip through TOML is lossless.
    assert_eq!(Config::from_toml_str(&toml::to_string(&config).unwrap()).unwrap(), config);
}

#[test]
fn data_dir_resolution() {
    let os = |s: &str| Some(std::ffi::OsString::from(s));
    assert_eq!(platform_data_dir(os("/xdg"), os("/home/u")), PathBuf::from("/xdg/relaykit"));
    assert_eq!(platform_data_dir(os("rel"), os("/home/u")), PathBuf::from("/home/u/.local/share/relaykit"));
    assert_eq!(platform_data_dir(None, None), PathBuf::from("./relaykit-data"));
    assert_eq!(platform_data_dir(None, os("")), PathBuf::from("./relaykit-data"));
    let mut config = Config { data_dir: Some(PathBuf::from("/srv/r")), ..Config::default() };
    assert_eq!(config.resolved_data_dir(), Some(PathBuf::from("/srv/r")));
    config.ephemeral = true;
    assert_eq!(config.resolved_data_dir(), None);
    config.data_dir = None;
    config.ephemeral = false;
    assert!(config.resolved_data_dir().is_some());
}
