//! `stats`, `diff` and `dump` checked against torch (float64) and numpy on
//! the same data, for every dtype.

mod common;

use common::*;
use serde_json::Value;

fn check_stats(doc: &Value, expected: &Value, file: &str) {
    let tensors = doc["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), expected.as_object().unwrap().len(), "{file}");
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        let e = &expected[name];
        for key in ["count", "nan", "pos_inf", "neg_inf", "zeros"] {
            assert_eq!(t[key], e[key], "{file} {name} {key}");
        }
        for key in ["min", "max", "mean", "std"] {
            close(&t[key], &e[key], &format!("{file} {name} {key}"));
        }
    }
}

#[test]
fn stats_match_torch_for_every_dtype() {
    let Some(_) = python() else { return };
    let doc = json(&["stats", &fixture("all.safetensors")], 0);
    check_stats(&doc, &expected()["stats"], "all");
    assert_eq!(doc["all_finite"], false);
    let doc = json(&["stats", &fixture("subbyte.safetensors")], 0);
    check_stats(&doc, &expected()["subbyte_stats"], "subbyte");
    let doc = json(&["stats", &fixture("sharded"), "--threads", "3"], 0);
    check_stats(&doc, &expected()["sharded_stats"], "sharded");
}

#[test]
fn stats_pattern_and_check_finite() {
    let Some(_) = python() else { return };
    let doc = json(
        &[
            "stats",
            &fixture("all.safetensors"),
            "-t",
            "f8_*",
            "-t",
            "bf16",
        ],
        0,
    );
    let names: Vec<&str> = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names.contains(&"bf16") && names.contains(&"f8_e8m0"));
    let output = run(&["stats", &fixture("all.safetensors"), "--check-finite"]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("nonfinite") && stderr(&output).contains("f16_inf"));
    let output = run(&[
        "stats",
        &fixture("all.safetensors"),
        "-t",
        "f32",
        "--check-finite",
    ]);
    assert_eq!(code(&output), 0);
    assert!(stdout(&output).contains("f32"));
    assert_eq!(
        code(&run(&[
            "stats",
            &fixture("all.safetensors"),
            "-t",
            "nothing*"
        ])),
        2
    );
}

#[test]
fn diff_matches_torch_isclose() {
    let Some(_) = python() else { return };
    let cases = [
        ("0.0/0.0/False", vec![]),
        (
            "1e-06/1e-05/True",
            vec!["--atol", "1e-6", "--rtol", "1e-5", "--equal-nan"],
        ),
        ("0.6/0.0/False", vec!["--atol", "0.6"]),
    ];
    for (key, flags) in cases {
        let mut args = vec![
            "diff",
            &fixture("diff_a.safetensors"),
            &fixture("diff_b.safetensors"),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.extend(flags.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let doc = json(&refs, 1);
        let expected = &expected()["diff"][key];
        let tensors = doc["tensors"].as_array().unwrap();
        assert_eq!(tensors.len(), expected.as_object().unwrap().len(), "{key}");
        for t in tensors {
            let name = t["name"].as_str().unwrap();
            let e = &expected[name];
            if t["identical"] == true {
                assert_eq!(t["differing"], 0);
                continue;
            }
            assert_eq!(t["differing"], e["differing"], "{key} {name}");
            close(
                &t["max_abs_diff"],
                &e["max_abs_diff"],
                &format!("{key} {name} max"),
            );
            close(
                &t["mean_abs_diff"],
                &e["mean_abs_diff"],
                &format!("{key} {name} mean"),
            );
            assert_eq!(t["equal"], e["differing"] == 0, "{key} {name}");
        }
        assert_eq!(doc["only_in_a"], serde_json::json!(["only_a"]));
        assert_eq!(doc["only_in_b"], serde_json::json!(["only_b"]));
        assert_eq!(doc["dtype_changed"][0]["name"], "i8");
        assert_eq!(doc["shape_changed"][0]["name"], "u8");
        assert_eq!(
            doc["metadata"]["changed"]["step"],
            serde_json::json!({"a": "1", "b": "2"})
        );
        assert_eq!(doc["metadata"]["only_in_b"]["extra"], "x");
    }
}

#[test]
fn diff_equal_checkpoints_exit_0() {
    let Some(_) = python() else { return };
    let doc = json(
        &[
            "diff",
            &fixture("all.safetensors"),
            &fixture("all.safetensors"),
        ],
        0,
    );
    assert_eq!(doc["equal"], true);
    assert!(doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["identical"] == true));
    let output = run(&[
        "diff",
        &fixture("sharded"),
        &fixture("sharded/model.safetensors.index.json"),
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = run(&[
        "diff",
        &fixture("diff_a.safetensors"),
        &fixture("diff_b.safetensors"),
    ]);
    assert_eq!(code(&output), 1);
    let text = stdout(&output);
    assert!(
        text.contains("- only_a") && text.contains("+ only_b") && text.contains("dtype I8 -> I16"),
        "{text}"
    );
    assert!(
        text.contains("~ f32 F32 [6, 7]: 2 of 42 values differ"),
        "{text}"
    );
}

#[test]
fn dump_values_and_slices() {
    let Some(_) = python() else { return };
    let doc = json(&["dump", &fixture("all.safetensors"), "f32"], 0);
    assert_eq!(doc["shape"], serde_json::json!([6, 7]));
    let flat: Vec<f64> = doc["values"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let want: Vec<f64> = expected()["f32_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(flat, want);
    let doc = json(
        &[
            "dump",
            &fixture("all.safetensors"),
            "f16",
            "--slice",
            "1:3, ::3",
        ],
        0,
    );
    assert_eq!(doc["shape"], serde_json::json!([2, 3]));
    let f16 = expected()["f16_values"].as_array().unwrap();
    assert_eq!(doc["values"][1][2], f16[2 * 7 + 6]);
    let doc = json(
        &[
            "dump",
            &fixture("subbyte.safetensors"),
            "f4",
            "--slice",
            "1",
        ],
        0,
    );
    assert_eq!(
        doc["values"].as_array().unwrap()[..],
        expected()["f4_values"].as_array().unwrap()[8..16]
    );
    let doc = json(&["dump", &fixture("all.safetensors"), "nonfinite"], 0);
    assert_eq!(
        doc["values"],
        serde_json::json!([1.0, "nan", "inf", "-inf", 0.0, -2.5])
    );
}

#[test]
fn dump_text_like_numpy() {
    let Some(_) = python() else { return };
    let output = run(&["dump", &fixture("numpy.safetensors"), "x"]);
    assert_eq!(
        stdout(&output),
        "[[ 0  1  2  3]\n [ 4  5  6  7]\n [ 8  9 10 11]]\n"
    );
    let output = run(&[
        "dump",
        &fixture("all.safetensors"),
        "big_f32",
        "--slice",
        ":, 0",
    ]);
    let ours = stdout(&output);
    let numpy = python_run(
        "import sys; from safetensors import safe_open; print(safe_open(sys.argv[1], 'np').get_tensor('big_f32')[:, 0])",
        &[&fixture("all.safetensors")],
    );
    assert!(ours == numpy, "ours:\n{ours}\nnumpy:\n{numpy}");
    let output = run(&["dump", &fixture("all.safetensors"), "scalar"]);
    assert_eq!(stdout(&output), "3.25\n");
}

#[test]
fn dump_slices_with_negative_steps_and_new_axes_like_numpy() {
    let Some(_) = python() else { return };
    for slice in [
        "::-1",
        "::-1, ::-2",
        "..., None, 1:4",
        "-1:0:-2, None",
        "-1",
    ] {
        let output = run(&["dump", &fixture("numpy.safetensors"), "x", "--slice", slice]);
        assert_eq!(code(&output), 0, "{slice}: {}", stderr(&output));
        let numpy = python_run(
            "import sys; from safetensors import safe_open; \
             x = safe_open(sys.argv[1], 'np').get_tensor('x'); \
             print(eval('x[' + sys.argv[2] + ']'))",
            &[&fixture("numpy.safetensors"), slice],
        );
        assert_eq!(stdout(&output), numpy, "{slice}");
    }
    let doc = json(
        &[
            "dump",
            &fixture("numpy.safetensors"),
            "x",
            "--slice",
            "::-1",
        ],
        0,
    );
    assert_eq!(doc["shape"], serde_json::json!([3, 4]));
    assert_eq!(doc["values"][0], serde_json::json!([8, 9, 10, 11]));
    let output = run(&["dump", &fixture("numpy.safetensors"), "x", "--slice", "::0"]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("cannot be zero"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn dump_raw_and_errors() {
    let Some(_) = python() else { return };
    let output = run(&[
        "dump",
        &fixture("numpy.safetensors"),
        "x",
        "--slice",
        "1",
        "--raw",
    ]);
    let want: Vec<u8> = (4i32..8).flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(output.stdout, want);
    let output = run(&["dump", &fixture("numpy.safetensors"), "missing"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("no tensor named \"missing\""));
    let output = run(&["dump", &fixture("numpy.safetensors"), "x", "--slice", "9"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("out of range"));
    assert_eq!(
        code(&run(&[
            "dump",
            &fixture("numpy.safetensors"),
            "x",
            "--slice",
            "a:b"
        ])),
        2
    );
}
