//! The command line's vocabulary: the earlier spellings still parse, flags that do not apply
//! to the chosen mode are refused with the reason, --help lists no hidden spelling, and
//! `trainer completions` prints scripts. Every case stops before any real work (at a missing
//! file, or at the refusal itself).
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root (where the committed models are).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `trainer ARGS` in the repository root: (success, stdout, stderr).
fn trainer(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `trainer ARGS`, asserts that it fails, and returns its stderr.
fn fails(args: &[&str]) -> String {
    let (ok, _, err) = trainer(args);
    assert!(!ok, "trainer {args:?} succeeded:\n{err}");
    err
}

/// Asserts that `trainer ARGS` was parsed (no clap error) and then failed at `after`, a later
/// error such as a missing file.
fn parsed_then_fails_at(args: &[&str], after: &str) {
    let err = fails(args);
    assert!(
        !err.contains("unexpected argument") && !err.contains("Usage:"),
        "trainer {args:?} did not parse:\n{err}"
    );
    assert!(
        err.contains(after),
        "trainer {args:?}: missing {after:?} in\n{err}"
    );
}

/// Asserts that `trainer ARGS` is refused with a message holding each of `want`.
fn refused(args: &[&str], want: &[&str]) {
    let err = fails(args);
    for w in want {
        assert!(err.contains(w), "trainer {args:?}: missing {w:?} in\n{err}");
    }
}

const SIMPLE: &str = "models/simple_unet_mnist.ddpm";
const TINY: &str = "models/tiny_unet_mnist.ddpm";
const MISSING: &str = "/nonexistent/missing.ddpm";

#[test]
fn earlier_spellings_still_parse() {
    let missing = "no such model file";
    parsed_then_fails_at(
        &["eval", "--fid", "--samples", "5", "--model", MISSING],
        missing,
    );
    parsed_then_fails_at(
        &["eval", "--nll", "--batch", "5", "--model", MISSING],
        missing,
    );
    parsed_then_fails_at(
        &["eval", "--fid", "--json", "/tmp/x.json", "--model", MISSING],
        missing,
    );
    parsed_then_fails_at(
        &["compare-int8", "--model", SIMPLE, "--int8", MISSING],
        "missing.ddpm: no such model file (--int8-model",
    );
    for value in ["true", "false"] {
        parsed_then_fails_at(
            &[
                "export",
                "--model",
                MISSING,
                "--out",
                "/nonexistent/out.ddpm",
                "--int8",
                "--bias-correction",
                value,
            ],
            "missing.ddpm: cannot read",
        );
    }
    // fetch-data --dir: parsed, then the (unreachable) mirror fails.
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&[
        "fetch-data",
        "--no-progress",
        "--dir",
        dir.path().to_str().unwrap(),
        "--mirror",
        "http://127.0.0.1:1/",
    ]);
    assert!(
        !err.contains("unexpected argument") && err.contains("127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn the_new_names_parse() {
    let missing = "no such model file";
    parsed_then_fails_at(&["eval", "--fid", "--n", "5", "--model", MISSING], missing);
    parsed_then_fails_at(
        &["eval", "--nll", "--batch-size", "5", "--model", MISSING],
        missing,
    );
    parsed_then_fails_at(
        &[
            "eval",
            "--fid",
            "--json-out",
            "/tmp/x.json",
            "--model",
            MISSING,
        ],
        missing,
    );
    parsed_then_fails_at(
        &["compare-int8", "--model", SIMPLE, "--int8-model", MISSING],
        "--int8-model",
    );
    parsed_then_fails_at(
        &[
            "export",
            "--model",
            MISSING,
            "--out",
            "/nonexistent/out.ddpm",
            "--int8",
            "--no-bias-correction",
        ],
        "missing.ddpm: cannot read",
    );
    // A model-carried clipping or guide can be turned off.
    parsed_then_fails_at(
        &["sample", "--no-clip-x0", "--no-guide", "--model", MISSING],
        missing,
    );
}

#[test]
fn both_spellings_of_one_setting_or_both_switches_of_a_pair_are_refused() {
    let err = fails(&[
        "export",
        "--model",
        SIMPLE,
        "--out",
        "/nonexistent/out.ddpm",
        "--int8",
        "--bias-correction",
        "false",
        "--no-bias-correction",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
    for pair in [
        ["--clip-x0", "--no-clip-x0"],
        ["--recompute-eps", "--no-recompute-eps"],
        ["--guide", "--no-guide"],
    ] {
        let mut args = vec!["sample", "--model", SIMPLE, "--sampler", "ddim"];
        args.push(pair[0]);
        if pair[0] == "--guide" {
            args.push(TINY);
        }
        args.push(pair[1]);
        let err = fails(&args);
        assert!(err.contains("cannot be used with"), "{pair:?}: {err}");
    }
}

#[test]
fn sampler_flags_of_the_other_sampler_are_refused_with_the_reason() {
    let ddim_only = "applies to --sampler ddim only";
    refused(
        &["sample", "--model", SIMPLE, "--steps", "20"],
        &["--steps", ddim_only, "DDPM runs all T steps"],
    );
    refused(
        &["sample", "--model", SIMPLE, "--eta", "0.5"],
        &["--eta", ddim_only, "--variance"],
    );
    refused(
        &["sample", "--model", SIMPLE, "--spacing", "trailing"],
        &["--spacing", ddim_only],
    );
    refused(
        &["sample", "--model", SIMPLE, "--clip-x0", "--recompute-eps"],
        &["--recompute-eps", ddim_only],
    );
    refused(
        &[
            "sample",
            "--model",
            SIMPLE,
            "--sampler",
            "ddim",
            "--variance",
            "fixed-small",
        ],
        &["--variance applies to --sampler ddpm only", "--eta"],
    );
    refused(
        &[
            "sample",
            "--model",
            SIMPLE,
            "--sampler",
            "ddim",
            "--recompute-eps",
        ],
        &["--recompute-eps needs clipping", "--clip-x0"],
    );
    // compare-int8 runs DDIM unless told otherwise, and refuses before touching any file.
    refused(
        &[
            "compare-int8",
            "--variance",
            "fixed-small",
            "--model",
            MISSING,
        ],
        &["--variance applies to --sampler ddpm only"],
    );
    refused(
        &[
            "compare-int8",
            "--sampler",
            "ddpm",
            "--steps",
            "3",
            "--model",
            MISSING,
        ],
        &["--steps", ddim_only],
    );
    refused(
        &["sample", "--model", SIMPLE, "--guidance", "3"],
        &["--guidance", "--guide MODEL"],
    );
}

#[test]
fn flags_of_another_mode_are_refused_with_the_reason() {
    refused(
        &["sample", "--model", SIMPLE, "--device", "cpu"],
        &["--device applies to --backend torch", "CPU"],
    );
    // eval: --nll's flags without it, --fid's without it.
    for (flag, value) in [
        ("--limit", "3"),
        ("--batch-size", "5"),
        ("--curve", "c.csv"),
    ] {
        refused(
            &["eval", "--fid", "--model", MISSING, flag, value],
            &[&format!("{flag} applies to --nll: ")],
        );
    }
    refused(
        &["eval", "--fid", "--model", MISSING, "--batch", "5"],
        &["--batch-size applies to --nll: "],
    );
    for (flag, value) in [("--n", "10"), ("--workers", "2"), ("--classifier", "c.st")] {
        refused(
            &["eval", "--nll", "--model", MISSING, flag, value],
            &[&format!("{flag} applies to --fid: ")],
        );
    }
    for (flag, value) in [("--sampler", "ddim"), ("--steps", "3"), ("--eta", "1")] {
        refused(
            &["eval", "--nll", "--model", MISSING, flag, value],
            &[&format!("{flag} applies to --fid's sampler"), "--variance"],
        );
    }
    // eval --nll --fid: --variance defines the bound's p_θ, so DDIM sampling keeps it.
    parsed_then_fails_at(
        &[
            "eval",
            "--nll",
            "--fid",
            "--sampler",
            "ddim",
            "--variance",
            "fixed-small",
            "--model",
            MISSING,
        ],
        "no such model file",
    );

    // export: the quantizer's flags without --int8, --raw without a checkpoint, --note on a
    // safetensors file.
    let out = "/nonexistent/out.ddpm";
    for (flag, value) in [
        ("--range", Some("minmax")),
        ("--bias-correction", Some("false")),
        ("--no-bias-correction", None),
        ("--calib-images", Some("8")),
        ("--seed", Some("1")),
        ("--ablation", None),
    ] {
        let mut args = vec!["export", "--model", SIMPLE, "--out", out, flag];
        args.extend(value);
        refused(&args, &[&format!("{flag} applies to --int8 only")]);
    }
    refused(
        &["export", "--model", SIMPLE, "--out", out, "--raw"],
        &["--raw applies to --checkpoint only"],
    );
    refused(
        &[
            "export",
            "--model",
            SIMPLE,
            "--out",
            out,
            "--safetensors",
            "--note",
            "x",
        ],
        &["--note applies to model files", "safetensors"],
    );
    // The TinyUNet quantizer reads none of SimpleUNet's own settings.
    refused(
        &[
            "export",
            "--model",
            TINY,
            "--out",
            out,
            "--int8",
            "--weight-clip",
            "max",
            "--equalize",
            "off",
        ],
        &[
            "--weight-clip, --equalize apply to SimpleUNet int8 exports only",
            "TinyUNet",
        ],
    );

    // fit: the other architecture's sizes, the options of the schedules not chosen.
    for (args, want) in [
        (
            &["--arch", "tiny", "--hidden1", "8"][..],
            "--hidden1 applies to --arch simple only",
        ),
        (
            &["--widths", "8,8,8"],
            "--widths applies to --arch tiny only",
        ),
        (
            &["--mid-blocks", "2"],
            "--mid-blocks applies to --arch tiny only",
        ),
        (
            &["--warmup-steps", "10"],
            "--warmup-steps applies to --lr-schedule cosine only",
        ),
        (
            &["--min-snr-gamma", "3"],
            "--min-snr-gamma applies to --loss-weight min-snr only",
        ),
        (
            &["--loss-weight", "min-snr", "--snr-plus-k", "2"],
            "--snr-plus-k applies to --loss-weight snr-plus only",
        ),
        (
            &["--schedule", "cosine", "--beta-end", "0.01"],
            "--beta-end applies to --schedule linear only",
        ),
    ] {
        let mut all = vec!["fit", "--data", "/nonexistent", "--out", out];
        all.extend(args);
        refused(&all, &[want]);
    }
    refused(
        &[
            "import",
            "--safetensors",
            "/nonexistent/x.safetensors",
            "--out",
            out,
            "--schedule",
            "cosine",
            "--beta-start",
            "0.001",
        ],
        &["--beta-start applies to --schedule linear only"],
    );
}

#[test]
fn help_lists_no_hidden_spelling_and_shows_the_defaults() {
    let help = |sub: &str| {
        let (ok, out, err) = trainer(&[sub, "--help"]);
        assert!(ok, "{err}");
        out
    };
    let has_flag = |text: &str, flag: &str| {
        text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '=')
            .any(|w| w == flag)
    };
    let sample = help("sample");
    for flag in ["--no-clip-x0", "--no-recompute-eps", "--no-guide", "--n"] {
        assert!(has_flag(&sample, flag), "{flag} missing in\n{sample}");
    }
    for default in [
        "[default: the model file's recipe (`trainer info MODEL`); ddpm for a file without one]",
        "[default: the recipe's; 50 when --sampler ddim turns a DDPM recipe into DDIM]",
        "[default: the recipe's; fixed-large]",
        "[default: the recipe's, else 2.5]",
    ] {
        assert!(sample.contains(default), "{default} missing in\n{sample}");
    }
    assert!(!sample.contains("seed's"), "{sample}");
    let eval = help("eval");
    for old in ["--samples", "--batch", "--json"] {
        assert!(!has_flag(&eval, old), "{old} listed in\n{eval}");
    }
    for new in ["--n", "--batch-size", "--json-out"] {
        assert!(has_flag(&eval, new), "{new} missing in\n{eval}");
    }
    let compare = help("compare-int8");
    assert!(!has_flag(&compare, "--int8"), "{compare}");
    assert!(has_flag(&compare, "--int8-model"), "{compare}");
    assert!(compare.contains("[default: ddim]") && compare.contains("[default: 10]"));
    let export = help("export");
    assert!(!has_flag(&export, "--bias-correction"), "{export}");
    assert!(has_flag(&export, "--no-bias-correction"), "{export}");
    let fetch = help("fetch-data");
    assert!(
        !has_flag(&fetch, "--dir") && has_flag(&fetch, "--data"),
        "{fetch}"
    );
    let (_, top, _) = trainer(&["--help"]);
    assert!(
        top.contains("completions") && !top.contains("seed's"),
        "{top}"
    );
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script, err) = trainer(&["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(script.len() > 1000, "{shell}: {script}");
        for word in [
            "trainer",
            "sample",
            "compare-int8",
            "eval",
            "int8-model",
            "no-clip-x0",
        ] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
        // The new names are offered, the earlier spellings that are aliases are not.
        let long = |f: &str| match shell {
            "fish" => format!("-l {f} "),
            _ => format!("--{f}"),
        };
        for new in ["json-out", "batch-size", "int8-model"] {
            assert!(script.contains(&long(new)), "{shell}: {new} missing");
        }
        assert!(
            !script.contains(&long("samples")),
            "{shell}: --samples offered"
        );
    }
    let err = fails(&["completions", "tcsh"]);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
    let (ok, help, _) = trainer(&["completions", "--help"]);
    assert!(
        ok && help.contains("bash-completion/completions/trainer"),
        "{help}"
    );
}
