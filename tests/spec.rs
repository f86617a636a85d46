//! The cluster spec (API.md §1): every file in testdata/spec/good loads; every file in
//! testdata/spec/bad is refused with the error and line its first line announces
//! (`# error: SUBSTRING @ line N`, or `@ line none`); FNV-1a known vectors; node and cluster
//! ids; defaults; the shipped spec/cluster3.yaml.

use std::path::{Path, PathBuf};

use rocinante::config::{self, ClusterSpec, Fsync, SpecError};
use rocinante::raft::NodeId;

fn spec_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/spec")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `# error: SUBSTRING @ line N` -> (SUBSTRING, Some(N)); `@ line none` -> None.
fn expectation(text: &str, file: &Path) -> (String, Option<usize>) {
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("# error: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# error: ... @ line N`",
            file.display()
        )
    });
    let (substring, line) = rest.rsplit_once(" @ line ").unwrap();
    let line = match line.trim() {
        "none" => None,
        n => Some(n.parse().unwrap()),
    };
    (substring.to_string(), line)
}

#[test]
fn good_specs_load() {
    let files = spec_files("good");
    assert!(files.len() >= 4);
    for file in files {
        let spec = ClusterSpec::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!spec.controllers.is_empty());
        let mut ids: Vec<NodeId> = spec.controllers.iter().map(|c| c.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), spec.controllers.len(), "{}", file.display());
    }
}

#[test]
fn bad_specs_are_refused_with_their_line() {
    let files = spec_files("bad");
    assert!(files.len() >= 25);
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (substring, line) = expectation(&text, file);
        match ClusterSpec::parse(&text) {
            Ok(_) => failures.push(format!("{}: accepted", file.display())),
            Err(err) => {
                let shown = err.to_string();
                println!(
                    "{:>32}  {shown}",
                    file.file_name().unwrap().to_string_lossy()
                );
                if !shown.contains(&substring) || err.line() != line {
                    failures.push(format!(
                        "{}: got {shown:?} at line {:?}; want {substring:?} at line {line:?}",
                        file.display(),
                        err.line()
                    ));
                }
                assert_eq!(err.exit_code(), 2);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn load_names_the_file_and_line() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spec/bad/port_zero.yaml");
    let err = ClusterSpec::load(&file).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}: line 7: ", file.display())),
        "{err}"
    );
    let missing = ClusterSpec::load("/nonexistent/spec.yaml").unwrap_err();
    assert!(matches!(missing, SpecError::Io { .. }));
    assert!(missing.to_string().contains("/nonexistent/spec.yaml"));
}

#[test]
fn fnv1a_64_known_vectors() {
    // From the FNV reference test suite (Fowler, Noll, Vo).
    assert_eq!(config::fnv1a_64(b""), 0xcbf29ce484222325);
    assert_eq!(config::fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
    assert_eq!(config::fnv1a_64(b"foobar"), 0x85944171f73967e8);
}

#[test]
fn node_ids_are_fnv_of_address_port_in_hex() {
    let spec = ClusterSpec::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/cluster3.yaml"))
        .unwrap();
    assert_eq!(spec.name, "local");
    assert!(spec.cleanup_on_failure);
    let c = &spec.controllers[0];
    assert_eq!(c.id(), NodeId(config::fnv1a_64(b"127.0.0.1:35001")));
    let shown = c.id().to_string();
    assert_eq!(shown.len(), 16);
    assert!(
        shown
            .chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
    );
    let ports: Vec<(u16, u16)> = spec.controllers.iter().map(|c| (c.port, c.rest)).collect();
    assert_eq!(ports, [(35001, 8001), (35002, 8002), (35003, 8003)]);
    assert_eq!(c.peer_addr(), "127.0.0.1:35001");
    assert_eq!(c.rest_addr(), "127.0.0.1:8001");
    assert_eq!(spec.controller(2).map(|c| c.port), Some(35002));
    assert_eq!(spec.controller(0), None);
    assert_eq!(spec.controller(4), None);
    assert_eq!(spec.by_id(c.id()), Some(c));
    assert_eq!(spec.node_data_dir(c), PathBuf::from("data").join(shown));
}

#[test]
fn cluster_id_depends_on_name_and_members_not_order() {
    let base = "artifact:\n  cluster:\n    name: NAME\n    controllers:\n";
    let member = |p: u16| {
        format!(
            "      - {{ address: 127.0.0.1, port: {p}, rest: {} }}\n",
            p + 1000
        )
    };
    let spec = |name: &str, ports: &[u16]| {
        let mut text = base.replace("NAME", name);
        for p in ports {
            text.push_str(&member(*p));
        }
        ClusterSpec::parse(&text).unwrap().cluster_id()
    };
    let id = spec("a", &[1, 2, 3]);
    assert_eq!(id, spec("a", &[3, 1, 2]));
    assert_ne!(id, spec("b", &[1, 2, 3]));
    assert_ne!(id, spec("a", &[1, 2, 4]));
    assert_ne!(id, spec("a", &[1, 2]));
    assert_eq!(id.to_string().len(), 16);
}

#[test]
fn defaults_and_overrides() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spec/good");
    let seed = ClusterSpec::load(dir.join("seed.yaml")).unwrap();
    assert_eq!(
        seed.election_timeout_ms.min,
        config::ELECTION_TIMEOUT_MS_MIN_DEFAULT
    );
    assert_eq!(
        seed.election_timeout_ms.max,
        config::ELECTION_TIMEOUT_MS_MAX_DEFAULT
    );
    assert_eq!(seed.heartbeat_ms, config::HEARTBEAT_MS_DEFAULT);
    assert_eq!(seed.wal_segment_bytes, 64 * 1024 * 1024);
    assert_eq!(seed.max_value_bytes, 1024 * 1024);
    assert_eq!(seed.idempotency_window_s, 600);
    assert_eq!((seed.flow_ttl_s.tcp, seed.flow_ttl_s.udp), (432_000, 30));
    assert_eq!(seed.fsync, Fsync::Always);
    assert_eq!(seed.controllers[0].metric.as_deref(), Some(":2112"));
    assert_eq!(
        seed.controllers[0].wwwroot,
        Some(PathBuf::from("/some/path/"))
    );
    assert_eq!(seed.store_config().idempotency_window_ms, 600_000);

    let all = ClusterSpec::load(dir.join("every_option.yaml")).unwrap();
    assert!(!all.cleanup_on_failure);
    assert_eq!(
        (all.election_timeout_ms.min, all.election_timeout_ms.max),
        (150, 300)
    );
    assert_eq!(all.heartbeat_ms, 30);
    assert_eq!(all.snapshot_threshold, 50_000);
    assert_eq!(all.wal_segment_bytes, 16 * 1024 * 1024);
    assert_eq!(all.max_value_bytes, 65_536);
    assert_eq!(all.request_timeout_ms, 2_000);
    assert_eq!(all.idempotency_window_s, 120);
    assert_eq!((all.flow_ttl_s.tcp, all.flow_ttl_s.udp), (3_600, 60));
    assert_eq!(all.fsync, Fsync::Never);
    assert_eq!(
        all.node_data_dir(&all.controllers[0]),
        PathBuf::from("/data/one")
    );
    let second = &all.controllers[1];
    assert_eq!(
        all.node_data_dir(second),
        Path::new("/var/lib/rocinante").join(second.id().to_string())
    );

    let flow = ClusterSpec::load(dir.join("flow_style.yaml")).unwrap();
    assert_eq!((flow.flow_ttl_s.tcp, flow.flow_ttl_s.udp), (432_000, 10));
    assert_eq!(flow.controllers[0].peer_addr(), "[::1]:35001");
    assert_eq!(
        flow.controllers[0].id(),
        NodeId(config::fnv1a_64(b"::1:35001"))
    );
}
