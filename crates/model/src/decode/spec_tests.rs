//! Schedule strings and TOML files: defaults, errors, round trips.

use super::*;

fn err(spec: &str) -> String {
    ScheduleSpec::parse(spec).unwrap_err().to_string()
}

#[test]
fn llada_spec_parses_with_upstream_defaults() {
    let s =
        ScheduleSpec::parse("llada:steps=8,gen_length=16,block_length=4,remasking=low_confidence")
            .unwrap();
    assert_eq!(
        s,
        ScheduleSpec::Llada(LladaParams {
            steps: 8,
            gen_length: 16,
            block_length: 4,
            temperature: 0.0,
            cfg_scale: 0.0,
            remasking: Remasking::LowConfidence,
            forbid_eot: false,
        })
    );
    // steps and block_length default to gen_length, as upstream's all-128 defaults do.
    let ScheduleSpec::Llada(p) = ScheduleSpec::parse("llada:gen_length=32").unwrap() else {
        panic!()
    };
    assert_eq!((p.steps, p.block_length), (32, 32));
}

#[test]
fn errors_name_the_schedule_or_option() {
    assert!(err("lladaa:steps=8").contains("unknown schedule `lladaa`"));
    assert!(err("llada:stepz=8").contains("unknown option `stepz` for schedule `llada`"));
    assert!(err("llada:gen_length=16,block_length=5").contains("option `block_length`"));
    assert!(err("llada:gen_length=16,block_length=4,steps=6").contains("option `steps`"));
    assert!(err("threshold:tau=0").contains("option `tau`"));
    assert!(err("threshold:tau=1.5").contains("option `tau`"));
    assert!(err("dream:alg=greedy").contains("option `alg`: unknown value `greedy`"));
    assert!(err("fixed:k=zero").contains("option `k`"));
    assert!(err("llada:steps").contains("expected key=value"));
    assert!(ScheduleSpec::parse("threshold:tau=1").is_ok());
}

#[test]
fn display_round_trips() {
    for spec in [
        "llada:steps=8,gen_length=16,block_length=4,temperature=0.5,cfg_scale=1,remasking=random",
        "dream:steps=8,max_new_tokens=16,top_k=50,alg=entropy,alg_temp=0.1",
        "dream:top_p=none,top_k=none",
        "threshold:gen_length=32,block_length=8,tau=0.7",
        "fixed:gen_length=16,k=all,order=random",
        "fixed:k=3",
        "fastdllm:gen_length=64,steps=64,block_length=32,threshold=0.9",
        "fastdllm:factor=1,temperature=0.5",
        "eb:gamma=0.01",
        "klass:gen_length=32,steps=32,block_length=8",
        "llada2:max_new_tokens=64,top_p=0.9,top_k=20,temperature=0.7",
        "compose:gen_length=64,block_length=32,score=margin,count=entropy_budget,gamma=0.5",
        "compose:gen_length=64,steps=16,score=neg_entropy,count=cosine",
        "compose:gen_length=64,block_length=16,steps=16,eligible=dilated,groups=4,count=top_k",
    ] {
        let s = ScheduleSpec::parse(spec).unwrap();
        assert_eq!(
            ScheduleSpec::parse(&s.to_string()).unwrap(),
            s,
            "{spec} -> {s}"
        );
    }
}

#[test]
fn presets_take_upstream_defaults() {
    let ScheduleSpec::Parts(c) = ScheduleSpec::parse("llada2").unwrap() else {
        panic!("a composition")
    };
    assert_eq!(
        c.spec,
        "llada2:max_new_tokens=128,block_size=32,steps_per_block=32,threshold=0.95,minimal_topk=1"
    );
    let ScheduleSpec::Parts(c) = ScheduleSpec::parse("klass").unwrap() else {
        panic!("a composition")
    };
    assert_eq!(
        c.spec,
        "klass:gen_length=128,steps=128,block_length=128,conf_threshold=0.9,kl_threshold=0.01,history=2"
    );
    let ScheduleSpec::Parts(c) = ScheduleSpec::parse("eb").unwrap() else {
        panic!("a composition")
    };
    assert_eq!(c.spec, "eb:gen_length=128,gamma=0.1");
    // Neither threshold nor factor: LLaDA's scheduled top-k on float64 confidence.
    let ScheduleSpec::Parts(c) = ScheduleSpec::parse("fastdllm").unwrap() else {
        panic!("a composition")
    };
    assert_eq!(
        c.count,
        crate::decode::parts::Count::TopK {
            curve: crate::decode::parts::Curve::Even
        }
    );
    // A sweep sets one option and keeps the others.
    let swept = ScheduleSpec::parse("eb:gen_length=16,gamma=0.1")
        .unwrap()
        .with_option("gamma", "2")
        .unwrap()
        .unwrap();
    assert_eq!(swept.to_string(), "eb:gen_length=16,gamma=2");
}

#[test]
fn toml_keys_match_spec_options() {
    let toml = "schedule = \"dream\"\nsteps = 8\nmax_new_tokens = 16\nalg = \"entropy\"\ntop_k = 50\neps = 0.001\n";
    let from_toml = ScheduleSpec::from_toml_str(toml).unwrap();
    let from_spec =
        ScheduleSpec::parse("dream:steps=8,max_new_tokens=16,alg=entropy,top_k=50").unwrap();
    assert_eq!(from_toml, from_spec);
    let e = ScheduleSpec::from_toml_str("schedule = \"fixed\"\nkk = 2\n").unwrap_err();
    assert!(e.contains("unknown option `kk`"), "{e}");
    assert!(ScheduleSpec::from_toml_str("steps = 2\n")
        .unwrap_err()
        .contains("missing key `schedule`"));
}

#[test]
fn fixed_steps_round_up() {
    let steps = |spec: &str| ScheduleSpec::parse(spec).unwrap().steps();
    assert_eq!(steps("fixed:gen_length=10,k=3"), Some(4));
    assert_eq!(steps("fixed:gen_length=10,k=all"), Some(1));
    assert_eq!(steps("fixed:gen_length=10"), Some(10));
    assert_eq!(steps("threshold:gen_length=10,block_length=5"), None);
}

#[test]
fn every_shipped_schedule_file_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../probes/schedules");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            ScheduleSpec::from_toml_file(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 9, "{n} schedule files");
}

#[test]
fn presets_take_upstreams_fixed_arguments_at_their_default_only() {
    assert!(ScheduleSpec::parse("fastdllm:remasking=low_confidence").is_ok());
    assert!(ScheduleSpec::parse("eb:cfg_scale=0.0").is_ok());
    let e = err("pc:remasking=random,background=x.json");
    assert!(
        e.contains("option `background`") || e.contains("option `remasking`"),
        "{e}"
    );
    let e = err("eb:cfg_scale=1");
    assert!(e.contains("option `cfg_scale`"), "{e}");
}
