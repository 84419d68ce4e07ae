//! `trainer inpaint` from the command line: the completions keep the known pixels exactly (core
//! f32, int8 planned and torch backends), the grid shows the original, the masked input and the
//! completions, an all-kept mask gives the input back, an all-hidden one is an ordinary sample,
//! and each bad request is a sentence naming the problem.
mod common;

use std::path::Path;

use common::{refused, trainer};
use ddpm_trainer::data::idx;
use ddpm_trainer::inpaint::{read_png_gray, HIDDEN_GREY};

/// Runs the trainer and checks it succeeded.
fn ok(args: &[&str]) -> String {
    let out = trainer(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?} failed: {err}");
    err
}

/// A 28×28 stand-in digit: a ring of radius 8 (255) on black.
fn ring() -> Vec<u8> {
    (0..28 * 28)
        .map(|i| {
            let (y, x) = ((i / 28) as f32 - 13.5, (i % 28) as f32 - 13.5);
            if ((x * x + y * y).sqrt() - 8.0).abs() < 2.0 {
                255
            } else {
                0
            }
        })
        .collect()
}

fn write_png(path: &Path, w: usize, h: usize, data: &[u8]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(data).unwrap();
}

/// Image `j` of a one-row grid of 28×28 images (border 2, ×4).
fn tile(grid: &[u8], grid_w: usize, j: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 * 28);
    for y in 0..28 {
        for x in 0..28 {
            let (row, col) = ((2 + y) * 4, (2 + j * 30 + x) * 4);
            out.push(grid[row * grid_w + col]);
        }
    }
    out
}

/// Fast sampler flags for the tests.
const QUICK: [&str; 5] = ["--sampler", "ddim", "--steps", "6", "--no-progress"];

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn completions_keep_the_known_half_on_every_backend_and_the_grid_shows_all() {
    let dir = tempfile::tempdir().unwrap();
    let digit = ring();
    let image = dir.path().join("ring.png");
    write_png(&image, 28, 28, &digit);
    for (model, backend) in [
        ("models/tiny_unet_mnist.ddpm", "core"),
        ("models/tiny_unet_mnist_int8.ddpm", "core"),
        ("models/tiny_unet_mnist.ddpm", "torch"),
    ] {
        let out = dir.path().join("grid.png");
        let ids = dir.path().join("done.idx");
        let mut args = vec![
            "inpaint",
            "--model",
            model,
            "--image",
            path_str(&image),
            "--mask",
            "bottom",
            "--n",
            "3",
            "--resample",
            "2",
            "--jump",
            "2",
            "--backend",
            backend,
            "--device",
            "cpu",
            "--out",
            path_str(&out),
            "--idx",
            path_str(&ids),
        ];
        if model.contains("int8") {
            args.extend(["--no-guide"]);
        }
        args.extend(QUICK);
        let msg = ok(&args);
        assert!(msg.contains("within 0 levels"), "{model} {backend}: {msg}");
        let done = idx::read_idx(&ids).unwrap();
        assert_eq!(done.dims, vec![3, 28, 28]);
        for c in done.data.chunks_exact(28 * 28) {
            assert_eq!(
                &c[..14 * 28],
                &digit[..14 * 28],
                "{model} {backend}: kept top half"
            );
            assert_ne!(
                &c[14 * 28..],
                &digit[14 * 28..],
                "{model} {backend}: nothing drawn"
            );
        }
        let (grid, gh, gw) = read_png_gray(&out).unwrap();
        assert_eq!((gh, gw), (32 * 4, (5 * 30 + 2) * 4), "one row of 5 images");
        assert_eq!(tile(&grid, gw, 0), digit, "the original");
        let masked = tile(&grid, gw, 1);
        assert_eq!(&masked[..14 * 28], &digit[..14 * 28]);
        assert!(masked[14 * 28..].iter().all(|&p| p == HIDDEN_GREY));
        for j in 0..3 {
            assert_eq!(tile(&grid, gw, 2 + j), done.data[j * 784..][..784]);
        }
    }
}

#[test]
fn an_all_kept_mask_gives_the_input_back_and_an_all_hidden_one_is_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let digit = ring();
    let image = dir.path().join("ring.png");
    write_png(&image, 28, 28, &digit);
    let (black, white) = (dir.path().join("keep.png"), dir.path().join("hide.png"));
    write_png(&black, 28, 28, &[0u8; 784]);
    write_png(&white, 28, 28, &[255u8; 784]);
    let ids = dir.path().join("out.idx");
    let grid = dir.path().join("grid.png");
    let run = |mask: &Path| {
        let mut args = vec![
            "inpaint",
            "--image",
            path_str(&image),
            "--mask",
            path_str(mask),
            "--n",
            "2",
            "--eta",
            "1",
            "--out",
            path_str(&grid),
            "--idx",
            path_str(&ids),
        ];
        args.extend(QUICK);
        ok(&args);
        idx::read_idx(&ids).unwrap().data
    };
    assert_eq!(run(&black), [digit.clone(), digit.clone()].concat());
    let drawn = run(&white);
    let sample_ids = dir.path().join("sample.idx");
    let mut args = vec![
        "sample",
        "--n",
        "2",
        "--eta",
        "1",
        "--out",
        path_str(&grid),
        "--idx",
        path_str(&sample_ids),
    ];
    args.extend(QUICK);
    ok(&args);
    assert_eq!(drawn, idx::read_idx(&sample_ids).unwrap().data);
}

#[test]
fn bad_requests_are_sentences() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("ring.png");
    write_png(&image, 28, 28, &ring());
    let small = dir.path().join("small.png");
    write_png(&small, 20, 20, &[0u8; 400]);
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"not an image").unwrap();
    let img = path_str(&image);
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["inpaint", "--n", "1", "--out"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(path_str(&dir.path().join("o.png")).to_owned());
        v.extend(QUICK.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            base(&["--image", img, "--mask", path_str(&small)]),
            "the mask is 20×20, the images are 28×28",
        ),
        (
            base(&["--image", path_str(&small), "--mask", "top"]),
            "the image is 20×20",
        ),
        (
            base(&["--image", path_str(&junk), "--mask", "top"]),
            "neither a PNG nor an IDX file",
        ),
        (
            base(&["--image", img, "--mask", "top", "--class", "3"]),
            "is unconditional",
        ),
        (
            base(&[
                "--image",
                img,
                "--mask",
                "top",
                "--model",
                "models/tiny_unet_mnist_cond.ddpm",
                "--no-guide",
                "--class",
                "10",
            ]),
            "has 10 classes, 0 to 9",
        ),
        (
            base(&["--image", img, "--mask", "top", "--resample", "0"]),
            "must be at least 1",
        ),
        (
            base(&["--image", img, "--mask", "top", "--index", "2"]),
            "--index picks an image of an IDX file",
        ),
        (base(&["--image", img]), "say what is hidden"),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = refused(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let idx_file = dir.path().join("two.idx");
    idx::write_idx(&idx_file, &[2, 28, 28], &[0u8; 2 * 784]).unwrap();
    let args = base(&[
        "--image",
        path_str(&idx_file),
        "--index",
        "2",
        "--mask",
        "top",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = refused(&args);
    assert!(err.contains("holds 2 images (0 to 1)"), "{err}");
}
