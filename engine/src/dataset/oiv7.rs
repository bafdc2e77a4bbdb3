//! Open Images V7: image-level labels, class descriptions and Localized Narratives in, samples out.
//!
//! Input (the official formats): image-level labels CSVs (`ImageID,Source,LabelName,Confidence`,
//! several splits merged in the order given), the class descriptions CSV (`LabelName,DisplayName`,
//! with or without that header), Localized Narratives JSONL files (one narrative per line:
//! `dataset_id`, `image_id`, `annotator_id`, `caption`, `timed_caption`, `traces`,
//! `voice_recording`) and a folder of `<ImageID>.jpg` images. The CSVs are read by the
//! `embedlab-oiv7` crate (polars lazy scans, streamed); the narratives here.
//!
//! Output: one sample per image of the labels files that the rules keep, in first-seen order: id =
//! ImageID, label set = the display names of its `Confidence` = 1 labels, captions = its
//! narratives in file order (across files in the order given), image = `<images>/<ImageID>.jpg`
//! whether or not it exists (image parts report missing ones).
//!
//! The files are gigabytes, so the work is ordered to read each once and parse texts only where
//! they are kept:
//! 1. classes, then labels (every image with its label set; images with only negative rows have
//!    an empty one and count as unlabelled);
//! 2. narratives, first pass: each line is parsed for `image_id` only (`caption` must be there but
//!    is not copied; `traces` and the rest are skipped by serde without allocating) and hashed in
//!    the same read; for images of the labels files, where each narrative starts is recorded;
//! 3. the shared rules (`filter::select`), with "has a narrative" from step 2 when narratives are
//!    given: uncaptioned, unlabelled, rare, outliers, limit;
//! 4. narratives, second pass: only the kept images' lines are read again (seeking past the rest)
//!    and their captions parsed.
//!
//! Narratives of images that the labels files do not list are ignored and counted.
//!
//! Errors name `file:line` (and the id): a malformed CSV row, an unknown label id, a narrative line
//! that is not JSON or lacks `image_id` or `caption`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::filter::{self, Rules};
use super::{DatasetError, DatasetStats, LabelSet, Sample, SampleId};
use crate::digest::{Digest, HashingReader};
use crate::progress::Progress;

/// What [`read`] hands back: kept samples, the digests of the files read (labels, classes,
/// narratives, in that order) and what the rules dropped.
pub(super) struct Loaded {
    pub samples: Vec<Sample>,
    pub digests: Vec<Digest>,
    pub stats: DatasetStats,
}

/// A narrative line, first pass: which image, and that it has a caption.
#[derive(Deserialize)]
struct Presence<'a> {
    #[serde(borrow)]
    image_id: Cow<'a, str>,
    #[serde(rename = "caption")]
    _caption: IgnoredAny,
}

/// A narrative line, second pass.
#[derive(Deserialize)]
struct Narrative {
    image_id: String,
    caption: String,
}

/// Where a narrative of a labelled image is: `file` indexes the narratives files.
struct Span {
    image: u32,
    file: u32,
    offset: u64,
    line: u64,
}

/// Reads the files of a [`super::Source::Oiv7`] and applies `rules`.
pub(super) fn read(
    labels: &[PathBuf],
    classes: &Path,
    narratives: &[PathBuf],
    images: Option<&Path>,
    rules: &Rules,
    progress: &Progress,
) -> Result<Loaded, DatasetError> {
    let mut digests = Vec::with_capacity(labels.len() + 1 + narratives.len());
    for path in labels.iter().map(PathBuf::as_path).chain([classes]) {
        digests.push(Digest::of_file(path).map_err(|source| io(path, source))?);
    }

    let classes = embedlab_oiv7::read_classes(classes)?;
    let bar = progress.counter("labels rows");
    let counted = bar.clone();
    let read = embedlab_oiv7::read_labels(labels, &classes, move |rows| counted.inc(rows));
    bar.finish_and_clear();
    let read = read?;
    let label_sets: Vec<LabelSet> = (read.classes.iter())
        .map(|of_image| {
            LabelSet::new(
                of_image
                    .iter()
                    .map(|&c| classes.display_name(c).to_string()),
            )
        })
        .collect();

    let index: HashMap<&str, u32> = (read.images.iter().enumerate())
        .map(|(i, id)| (id.as_str(), i as u32))
        .collect();
    let found = locate_narratives(narratives, &index, progress)?;
    digests.extend(found.digests);
    let mut captioned = vec![false; read.images.len()];
    found
        .spans
        .iter()
        .for_each(|s| captioned[s.image as usize] = true);

    let refs: Vec<&LabelSet> = label_sets.iter().collect();
    let with_narratives = (!narratives.is_empty()).then_some(captioned.as_slice());
    let (kept, mut stats) = filter::select(&refs, with_narratives, rules);
    stats.ignored_narratives = found.ignored;

    let mut keep = vec![false; read.images.len()];
    kept.iter().for_each(|&i| keep[i] = true);
    let spans: Vec<Span> = (found.spans.into_iter())
        .filter(|s| keep[s.image as usize])
        .collect();
    let mut captions = read_captions(narratives, &spans, &read.images, progress)?;

    let mut label_sets: Vec<Option<LabelSet>> = label_sets.into_iter().map(Some).collect();
    let samples = kept
        .into_iter()
        .map(|i| {
            let id = &read.images[i];
            Sample {
                id: SampleId(id.clone()),
                labels: label_sets[i].take().expect("each image is kept once"),
                captions: captions.remove(&(i as u32)).unwrap_or_default(),
                image: images.map(|dir| dir.join(format!("{id}.jpg"))),
            }
        })
        .collect();
    Ok(Loaded {
        samples,
        digests,
        stats,
    })
}

fn io(path: &Path, source: std::io::Error) -> DatasetError {
    DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A line without its line ending (and, on a first line, a UTF-8 byte order mark).
fn trim_line(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// What the first pass over the narratives found.
struct Found {
    /// Narratives of images in `index`, in file order.
    spans: Vec<Span>,
    /// Narratives of other images.
    ignored: usize,
    digests: Vec<Digest>,
}

fn locate_narratives(
    paths: &[PathBuf],
    index: &HashMap<&str, u32>,
    progress: &Progress,
) -> Result<Found, DatasetError> {
    let mut found = Found {
        spans: Vec::new(),
        ignored: 0,
        digests: Vec::with_capacity(paths.len()),
    };
    let sizes: Vec<u64> = paths
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).map_err(|e| io(p, e)))
        .collect::<Result<_, _>>()?;
    let bar = progress.bytes(sizes.iter().sum(), "narratives");
    for (file, path) in paths.iter().enumerate() {
        let opened = File::open(path).map_err(|e| io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, HashingReader::new(opened));
        let mut raw = Vec::new();
        let (mut offset, mut number) = (0u64, 0u64);
        loop {
            raw.clear();
            let n = reader
                .read_until(b'\n', &mut raw)
                .map_err(|e| io(path, e))?;
            if n == 0 {
                break;
            }
            let start = offset;
            offset += n as u64;
            number += 1;
            bar.inc(n as u64);
            let line = trim_line(&raw);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let presence: Presence = serde_json::from_slice(line)
                .map_err(|err| DatasetError::json(path, &err, number as usize - 1, None))?;
            match index.get(presence.image_id.as_ref()) {
                Some(&image) => found.spans.push(Span {
                    image,
                    file: file as u32,
                    offset: start,
                    line: number,
                }),
                None => found.ignored += 1,
            }
        }
        found.digests.push(reader.get_ref().digest());
    }
    bar.finish_and_clear();
    Ok(found)
}

/// Second pass: the captions of `spans` (in file order), by image.
fn read_captions(
    paths: &[PathBuf],
    spans: &[Span],
    images: &[String],
    progress: &Progress,
) -> Result<HashMap<u32, Vec<String>>, DatasetError> {
    let mut captions: HashMap<u32, Vec<String>> = HashMap::new();
    let bar = progress.bar(spans.len() as u64, "captions");
    for (file, path) in paths.iter().enumerate() {
        let mine = spans.iter().filter(|s| s.file as usize == file);
        let mut reader = None;
        let mut position = 0u64;
        let mut raw = Vec::new();
        for span in mine {
            let reader = match &mut reader {
                Some(reader) => reader,
                None => reader.insert(BufReader::with_capacity(
                    1 << 20,
                    File::open(path).map_err(|e| io(path, e))?,
                )),
            };
            // Forward only: spans are in file order.
            reader
                .seek_relative((span.offset - position) as i64)
                .map_err(|e| io(path, e))?;
            raw.clear();
            let n = reader
                .read_until(b'\n', &mut raw)
                .map_err(|e| io(path, e))?;
            position = span.offset + n as u64;
            let narrative: Narrative = serde_json::from_slice(trim_line(&raw))
                .map_err(|err| DatasetError::json(path, &err, span.line as usize - 1, None))?;
            let id = &images[span.image as usize];
            if narrative.image_id != *id {
                return Err(DatasetError::Sample {
                    path: path.clone(),
                    line: Some(span.line as usize),
                    id: Some(SampleId(id.clone())),
                    message: "the file changed while it was read".to_string(),
                });
            }
            captions
                .entry(span.image)
                .or_default()
                .push(narrative.caption);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(captions)
}

#[cfg(test)]
mod tests {
    use crate::dataset::{LoadOptions, Source, load};

    const CLASSES: &str = "/m/01,Cat\n/m/02,Dog\n/m/03,\"Car, toy\"\n";

    /// A narrative line with every official field (and a trace, which is never materialised).
    fn narrative(image: &str, caption: &str) -> String {
        format!(
            "{{\"dataset_id\": \"open_images\", \"image_id\": \"{image}\", \"annotator_id\": 93, \
             \"caption\": \"{caption}\", \"timed_caption\": [{{\"utterance\": \"a\", \
             \"start_time\": 0.0, \"end_time\": 0.5}}], \"traces\": [[{{\"x\": 0.1, \"y\": 0.2, \
             \"t\": 0.3}}]], \"voice_recording\": \"v/{image}.ogg\"}}\n"
        )
    }

    struct Case {
        dir: tempfile::TempDir,
        labels: Vec<&'static str>,
        narratives: Vec<&'static str>,
    }

    impl Case {
        fn new() -> Case {
            let case = Case {
                dir: tempfile::tempdir().unwrap(),
                labels: Vec::new(),
                narratives: Vec::new(),
            };
            case.file("classes.csv", CLASSES);
            case
        }

        fn file(&self, name: &str, text: &str) {
            std::fs::write(self.dir.path().join(name), text).unwrap();
        }

        fn labels(mut self, name: &'static str, rows: &str) -> Case {
            self.file(
                name,
                &format!("ImageID,Source,LabelName,Confidence\n{rows}"),
            );
            self.labels.push(name);
            self
        }

        fn narratives(mut self, name: &'static str, lines: &[(&str, &str)]) -> Case {
            let text: String = lines.iter().map(|(i, c)| narrative(i, c)).collect();
            self.file(name, &text);
            self.narratives.push(name);
            self
        }

        fn source(&self) -> Source {
            let path = |name: &&str| self.dir.path().join(name);
            Source::Oiv7 {
                labels: self.labels.iter().map(path).collect(),
                classes: self.dir.path().join("classes.csv"),
                narratives: self.narratives.iter().map(path).collect(),
                images: Some(self.dir.path().join("images")),
            }
        }

        fn load(&self, opts: LoadOptions) -> Result<crate::dataset::Dataset, String> {
            load(&self.source(), &opts).map_err(|e| e.to_string())
        }
    }

    fn opts(min: usize) -> LoadOptions {
        LoadOptions {
            name: "oi".into(),
            min_label_set_count: min,
            ..LoadOptions::default()
        }
    }

    /// a, b: Cat; c: Cat + Dog (rows in two files); d: only a negative row; e: Dog without a
    /// narrative; f: Cat + Car.
    fn case() -> Case {
        Case::new()
            .labels(
                "val.csv",
                "a,verification,/m/01,1\nc,verification,/m/01,1\nd,verification,/m/02,0\n\
                 b,crowdsource-verified,/m/01,1.0\ne,verification,/m/02,1\n",
            )
            .labels(
                "test.csv",
                "c,verification,/m/02,1\nf,verification,/m/03,1\nf,verification,/m/01,1\n\
                 a,verification,/m/02,0\n",
            )
            .narratives(
                "n1.jsonl",
                &[
                    ("a", "a one"),
                    ("zz", "unknown"),
                    ("c", "c one"),
                    ("a", "a two"),
                ],
            )
            .narratives(
                "n2.jsonl",
                &[
                    ("b", "b one"),
                    ("a", "a three"),
                    ("d", "d one"),
                    ("f", "f one"),
                ],
            )
    }

    fn ids(d: &crate::dataset::Dataset) -> Vec<&str> {
        d.samples.iter().map(|s| s.id.0.as_str()).collect()
    }

    #[test]
    fn labels_narratives_and_images_become_samples() {
        let case = case();
        let d = case.load(opts(1)).unwrap();
        assert_eq!(ids(&d), ["a", "c", "b", "f"]);
        let a = &d.samples[0];
        assert_eq!(a.labels.labels(), ["Cat"]);
        assert_eq!(a.captions, ["a one", "a two", "a three"]);
        assert_eq!(a.image, Some(case.dir.path().join("images/a.jpg")));
        assert_eq!(d.samples[1].labels.labels(), ["Cat", "Dog"]);
        assert_eq!(d.samples[3].labels.labels(), ["Car, toy", "Cat"]);
        let s = &d.stats;
        assert_eq!(s.loaded, 6);
        // e has no narrative; d has one but only a negative label.
        assert_eq!((s.dropped_uncaptioned, s.dropped_unlabelled), (1, 1));
        assert_eq!(s.ignored_narratives, 1);
        assert_eq!(d.fingerprint, case.load(opts(1)).unwrap().fingerprint);
    }

    #[test]
    fn without_narratives_no_caption_rule() {
        let mut case = case();
        case.narratives.clear();
        let d = case.load(opts(1)).unwrap();
        assert_eq!(ids(&d), ["a", "c", "b", "e", "f"]);
        assert!(d.samples.iter().all(|s| s.captions.is_empty()));
        assert_eq!(
            (d.stats.dropped_uncaptioned, d.stats.dropped_unlabelled),
            (0, 1)
        );
    }

    #[test]
    fn rare_label_sets_and_the_limit_apply_after_the_caption_rule() {
        let d = case().load(opts(2)).unwrap();
        assert_eq!(ids(&d), ["a", "b"]);
        assert_eq!(d.stats.dropped_rare, 2);

        // 40 images: 30 Cat, 10 Dog, each with a narrative; limit 8 keeps 6 Cat and 2 Dog.
        let rows: String = (0..40)
            .map(|i| format!("i{i},v,/m/0{},1\n", if i % 4 == 0 { 2 } else { 1 }))
            .collect();
        let names: Vec<String> = (0..40).map(|i| format!("i{i}")).collect();
        let lines: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
        let case = Case::new()
            .labels("l.csv", &rows)
            .narratives("n.jsonl", &lines);
        let limited = |seed| {
            case.load(LoadOptions {
                limit: Some(8),
                seed,
                ..opts(2)
            })
            .unwrap()
        };
        let d = limited(1);
        let dogs = d
            .samples
            .iter()
            .filter(|s| s.labels.labels() == ["Dog"])
            .count();
        assert_eq!((d.samples.len(), dogs), (8, 2));
        assert!(d.samples.iter().all(|s| s.captions == ["x"]));
        assert_ne!(ids(&d), ids(&limited(2)));
    }

    #[test]
    fn the_outlier_rule_and_its_fingerprint() {
        let case = case();
        let plain = case.load(opts(1)).unwrap();
        // Label sets {Cat}: 2, {Cat, Dog}: 1, {Car, Cat}: 1; mean 4/3, std 0.577: {Cat} lies
        // 1.15 std away.
        let with = |k| {
            case.load(LoadOptions {
                outlier_std: Some(k),
                ..opts(1)
            })
            .unwrap()
        };
        let narrow = with(1.0);
        assert_eq!(ids(&narrow), ["c", "f"]);
        assert_eq!(narrow.stats.dropped_outliers, 2);
        let wide = with(1.2);
        assert_eq!(ids(&wide), ids(&plain));
        assert_ne!(wide.fingerprint, plain.fingerprint);
    }

    #[test]
    fn bad_narrative_lines_name_file_and_line() {
        let cases = [
            (
                "{\"image_id\": \"a\"}\n",
                "n.jsonl:1:",
                "missing field `caption`",
            ),
            (
                "\n{\"caption\": \"x\", \"traces\": []}\n",
                "n.jsonl:2:",
                "missing field `image_id`",
            ),
            (
                "{\"image_id\": \"a\", \"caption\": \"x\"\n",
                "n.jsonl:1:",
                "EOF",
            ),
            ("not json\n", "n.jsonl:1:", "expected"),
        ];
        for (text, at, what) in cases {
            let case = case();
            case.file("n1.jsonl", text);
            case.file("n2.jsonl", "");
            let err = case.load(opts(1)).unwrap_err();
            let at = at.replace("n.jsonl", "n1.jsonl");
            assert!(err.contains(&at) && err.contains(what), "{text:?}: {err}");
        }
    }

    #[test]
    fn label_file_errors_reach_the_engine_with_file_and_line() {
        let case = Case::new().labels("l.csv", "a,v,/m/01,1\na,v,/m/09,1\n");
        let err = case.load(opts(1)).unwrap_err();
        assert!(
            err.contains("l.csv:3: unknown label id /m/09 (not in ") && err.contains("classes.csv"),
            "{err}"
        );
        let case = Case::new().labels("l.csv", "a,v,/m/01,one\n");
        let err = case.load(opts(1)).unwrap_err();
        assert!(
            err.contains("l.csv:2: Confidence `one` is not a number"),
            "{err}"
        );
    }
}
