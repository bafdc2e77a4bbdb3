//! COCO: `captions_*.json` and `instances_*.json` files in, raw samples out.
//!
//! Input: any number of captions files (possibly none: a label-only dataset) and instances files,
//! several splits merged. Each file is read whole and parsed with `serde_json::from_slice` into
//! structs that hold only the fields used (an instances file is ~450 MB, mostly segmentation
//! polygons, which serde skips without allocating); files are parsed in parallel, then merged in
//! the order given, captions files first.
//!
//! Output: one sample per image id, in the order first seen; captions in file order; the label set
//! is the image's instance categories. Invariants checked: an image id appears once per file's
//! `images[]` and with one `file_name` across files; every annotation's `image_id` is in its own
//! file's `images[]`; every `category_id` is in its file's `categories[]`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;

use super::{DatasetError, LabelSet, Loaded, Sample, SampleId};
use crate::digest::Digest;

#[derive(Deserialize)]
struct Image {
    id: u64,
    file_name: String,
}

#[derive(Deserialize)]
struct CaptionAnnotation {
    id: Option<u64>,
    image_id: u64,
    caption: String,
}

#[derive(Deserialize)]
struct InstanceAnnotation {
    id: Option<u64>,
    image_id: u64,
    category_id: u64,
}

#[derive(Deserialize)]
struct Category {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct CaptionsFile {
    images: Vec<Image>,
    annotations: Vec<CaptionAnnotation>,
}

#[derive(Deserialize)]
struct InstancesFile {
    images: Vec<Image>,
    annotations: Vec<InstanceAnnotation>,
    categories: Vec<Category>,
}

enum Parsed {
    Captions(CaptionsFile),
    Instances(InstancesFile),
}

#[derive(Clone, Copy)]
enum Kind {
    Captions,
    Instances,
}

/// Reads and merges the files; `images` is the folder that `file_name`s are relative to.
pub(super) fn read(
    captions: &[PathBuf],
    instances: &[PathBuf],
    images: Option<&Path>,
) -> Result<Loaded, DatasetError> {
    let files: Vec<(&Path, Kind)> = captions
        .iter()
        .map(|p| (p.as_path(), Kind::Captions))
        .chain(instances.iter().map(|p| (p.as_path(), Kind::Instances)))
        .collect();
    let read = |file: usize| {
        let path = files[file].0;
        std::fs::read(path).map_err(|source| DatasetError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    parse_and_merge(&files, read, images)
}

/// The raw samples of COCO captions and instances files, each given as its path (which names it
/// in errors) and bytes, merged as [`super::load`] merges them, before the shared rules.
pub fn parse_coco(
    captions: &[(&Path, &[u8])],
    instances: &[(&Path, &[u8])],
    images: Option<&Path>,
) -> Result<Vec<Sample>, DatasetError> {
    let (files, contents): (Vec<(&Path, Kind)>, Vec<&[u8]>) = captions
        .iter()
        .map(|&(path, bytes)| ((path, Kind::Captions), bytes))
        .chain((instances.iter()).map(|&(path, bytes)| ((path, Kind::Instances), bytes)))
        .unzip();
    let loaded = parse_and_merge(&files, |file| Ok(contents[file]), images)?;
    Ok(loaded.samples)
}

/// Parses `files` in parallel, each from the bytes `bytes_of` gives for its index, then merges
/// them in order. Each file's bytes are dropped once parsed (an instances file is ~450 MB), and
/// errors are reported in file order whichever thread finds one first.
fn parse_and_merge<B: AsRef<[u8]>>(
    files: &[(&Path, Kind)],
    bytes_of: impl Fn(usize) -> Result<B, DatasetError> + Sync,
    images: Option<&Path>,
) -> Result<Loaded, DatasetError> {
    let parsed: Vec<Result<(Parsed, Digest), DatasetError>> = (0..files.len())
        .into_par_iter()
        .map(|file| {
            let (path, kind) = files[file];
            let bytes = bytes_of(file)?;
            let parsed = parse(bytes.as_ref(), path, kind)?;
            Ok((parsed, Digest::of_bytes(bytes.as_ref())))
        })
        .collect();

    let mut merger = Merger::default();
    let mut digests = Vec::with_capacity(files.len());
    for (file, result) in parsed.into_iter().enumerate() {
        let (content, digest) = result?;
        digests.push(digest);
        match content {
            Parsed::Captions(c) => merger.add_captions(files, file, c)?,
            Parsed::Instances(i) => merger.add_instances(files, file, i)?,
        }
    }
    Ok(Loaded {
        samples: merger.finish(images),
        digests,
    })
}

fn parse(bytes: &[u8], path: &Path, kind: Kind) -> Result<Parsed, DatasetError> {
    let json_error = |err: serde_json::Error| DatasetError::json(path, &err, 0, None);
    Ok(match kind {
        Kind::Captions => Parsed::Captions(serde_json::from_slice(bytes).map_err(json_error)?),
        Kind::Instances => Parsed::Instances(serde_json::from_slice(bytes).map_err(json_error)?),
    })
}

/// An image while files are merged; labels are indices into `Merger::label_names`.
struct Pending {
    id: u64,
    file_name: String,
    /// Index of the first file that listed the image (for conflict messages).
    first_file: usize,
    captions: Vec<String>,
    labels: Vec<u32>,
}

#[derive(Default)]
struct Merger {
    entries: Vec<Pending>,
    by_id: HashMap<u64, usize>,
    label_names: Vec<String>,
    label_index: HashMap<String, u32>,
}

impl Merger {
    /// Registers a file's `images[]`; returns its image id → entry index map.
    fn add_images(
        &mut self,
        files: &[(&Path, Kind)],
        file: usize,
        images: Vec<Image>,
    ) -> Result<HashMap<u64, usize>, DatasetError> {
        let path = files[file].0;
        let mut local = HashMap::with_capacity(images.len());
        for image in images {
            let index = match self.by_id.entry(image.id) {
                Entry::Occupied(seen) => {
                    let entry = &self.entries[*seen.get()];
                    if entry.file_name != image.file_name && entry.first_file != file {
                        return Err(sample_error(
                            path,
                            image.id,
                            format!(
                                "file_name \"{}\" differs from \"{}\" in {}",
                                image.file_name,
                                entry.file_name,
                                files[entry.first_file].0.display()
                            ),
                        ));
                    }
                    *seen.get()
                }
                Entry::Vacant(slot) => {
                    slot.insert(self.entries.len());
                    self.entries.push(Pending {
                        id: image.id,
                        file_name: image.file_name,
                        first_file: file,
                        captions: Vec::new(),
                        labels: Vec::new(),
                    });
                    self.entries.len() - 1
                }
            };
            if local.insert(image.id, index).is_some() {
                return Err(sample_error(
                    path,
                    image.id,
                    "listed twice in images[]".to_string(),
                ));
            }
        }
        Ok(local)
    }

    fn add_captions(
        &mut self,
        files: &[(&Path, Kind)],
        file: usize,
        content: CaptionsFile,
    ) -> Result<(), DatasetError> {
        let local = self.add_images(files, file, content.images)?;
        for (index, annotation) in content.annotations.into_iter().enumerate() {
            let Some(&entry) = local.get(&annotation.image_id) else {
                return Err(missing_image(
                    files[file].0,
                    index,
                    annotation.id,
                    annotation.image_id,
                ));
            };
            self.entries[entry].captions.push(annotation.caption);
        }
        Ok(())
    }

    fn add_instances(
        &mut self,
        files: &[(&Path, Kind)],
        file: usize,
        content: InstancesFile,
    ) -> Result<(), DatasetError> {
        let path = files[file].0;
        let local = self.add_images(files, file, content.images)?;
        let mut categories = HashMap::with_capacity(content.categories.len());
        for category in content.categories {
            let label = self.intern(category.name);
            if categories.insert(category.id, label).is_some() {
                return Err(DatasetError::Sample {
                    path: path.to_path_buf(),
                    line: None,
                    id: None,
                    message: format!("category id {} listed twice in categories[]", category.id),
                });
            }
        }
        for (index, annotation) in content.annotations.into_iter().enumerate() {
            let Some(&entry) = local.get(&annotation.image_id) else {
                return Err(missing_image(
                    path,
                    index,
                    annotation.id,
                    annotation.image_id,
                ));
            };
            let Some(&label) = categories.get(&annotation.category_id) else {
                return Err(DatasetError::Annotation {
                    path: path.to_path_buf(),
                    index,
                    id: annotation.id,
                    message: format!(
                        "category_id {} (image {}) is not in categories[]",
                        annotation.category_id, annotation.image_id
                    ),
                });
            };
            self.entries[entry].labels.push(label);
        }
        Ok(())
    }

    fn intern(&mut self, name: String) -> u32 {
        if let Some(&index) = self.label_index.get(&name) {
            return index;
        }
        let index = self.label_names.len() as u32;
        self.label_names.push(name.clone());
        self.label_index.insert(name, index);
        index
    }

    fn finish(self, images: Option<&Path>) -> Vec<Sample> {
        let names = self.label_names;
        self.entries
            .into_iter()
            .map(|mut entry| {
                entry.labels.sort_unstable();
                entry.labels.dedup();
                Sample {
                    id: SampleId(entry.id.to_string()),
                    labels: LabelSet::new(entry.labels.iter().map(|&l| names[l as usize].clone())),
                    captions: entry.captions,
                    image: images.map(|folder| folder.join(&entry.file_name)),
                }
            })
            .collect()
    }
}

fn sample_error(path: &Path, id: u64, message: String) -> DatasetError {
    DatasetError::Sample {
        path: path.to_path_buf(),
        line: None,
        id: Some(SampleId(id.to_string())),
        message,
    }
}

fn missing_image(path: &Path, index: usize, id: Option<u64>, image_id: u64) -> DatasetError {
    DatasetError::Annotation {
        path: path.to_path_buf(),
        index,
        id,
        message: format!("image_id {image_id} has no entry in this file's images[]"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::dataset::{Dataset, LoadOptions, Source, load};

    const CAPTIONS_A: &str = r#"{
  "info": {"year": 2017},
  "images": [
    {"id": 1, "file_name": "000001.jpg", "width": 640},
    {"id": 2, "file_name": "000002.jpg"},
    {"id": 3, "file_name": "000003.jpg"}
  ],
  "annotations": [
    {"id": 10, "image_id": 2, "caption": "two first"},
    {"id": 11, "image_id": 1, "caption": "one first"},
    {"id": 12, "image_id": 2, "caption": "two second"}
  ]
}"#;

    const INSTANCES_A: &str = r#"{
  "images": [
    {"id": 3, "file_name": "000003.jpg"},
    {"id": 1, "file_name": "000001.jpg"},
    {"id": 2, "file_name": "000002.jpg"},
    {"id": 4, "file_name": "000004.jpg"}
  ],
  "annotations": [
    {"id": 100, "image_id": 1, "category_id": 18, "segmentation": [[1.0, 2.0, 3.0]], "bbox": [0, 0, 1, 1]},
    {"id": 101, "image_id": 1, "category_id": 17},
    {"id": 102, "image_id": 1, "category_id": 18},
    {"id": 103, "image_id": 2, "category_id": 17},
    {"id": 104, "image_id": 4, "category_id": 17}
  ],
  "categories": [
    {"id": 17, "name": "cat", "supercategory": "animal"},
    {"id": 18, "name": "dog", "supercategory": "animal"}
  ]
}"#;

    const CAPTIONS_B: &str = r#"{
  "images": [{"id": 5, "file_name": "000005.jpg"}, {"id": 1, "file_name": "000001.jpg"}],
  "annotations": [
    {"id": 20, "image_id": 5, "caption": "five"},
    {"id": 21, "image_id": 1, "caption": "one from b"}
  ]
}"#;

    const INSTANCES_B: &str = r#"{
  "images": [{"id": 5, "file_name": "000005.jpg"}],
  "annotations": [{"id": 200, "image_id": 5, "category_id": 1}],
  "categories": [{"id": 1, "name": "dog"}]
}"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn opts(min: usize) -> LoadOptions {
        LoadOptions {
            name: "t".into(),
            min_label_set_count: min,
            limit: None,
            seed: 0,
            ..LoadOptions::default()
        }
    }

    fn coco(captions: Vec<PathBuf>, instances: Vec<PathBuf>) -> Source {
        Source::Coco {
            captions,
            instances,
            images: None,
        }
    }

    fn load_err(source: &Source) -> String {
        load(source, &opts(1)).unwrap_err().to_string()
    }

    fn by_id<'a>(d: &'a Dataset, id: &str) -> &'a crate::dataset::Sample {
        d.samples.iter().find(|s| s.id.0 == id).unwrap()
    }

    #[test]
    fn label_sets_captions_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::Coco {
            captions: vec![write(dir.path(), "c.json", CAPTIONS_A)],
            instances: vec![write(dir.path(), "i.json", INSTANCES_A)],
            images: Some(dir.path().join("imgs")),
        };
        let d = load(&source, &opts(1)).unwrap();
        // Order first seen: captions file (1, 2, 3), then new ids from instances (4); 3 has no
        // instances and is dropped.
        let ids: Vec<&str> = d.samples.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, ["1", "2", "4"]);
        assert_eq!(d.stats.loaded, 4);
        assert_eq!(d.stats.dropped_unlabelled, 1);
        let one = by_id(&d, "1");
        assert_eq!(one.labels.labels(), ["cat", "dog"]);
        assert_eq!(one.captions, ["one first"]);
        assert_eq!(
            one.image.as_deref(),
            Some(dir.path().join("imgs/000001.jpg").as_path())
        );
        assert_eq!(by_id(&d, "2").captions, ["two first", "two second"]);
        assert_eq!(by_id(&d, "2").labels.labels(), ["cat"]);
        assert!(by_id(&d, "4").captions.is_empty());
    }

    #[test]
    fn two_splits_merge() {
        let dir = tempfile::tempdir().unwrap();
        let source = coco(
            vec![
                write(dir.path(), "ca.json", CAPTIONS_A),
                write(dir.path(), "cb.json", CAPTIONS_B),
            ],
            vec![
                write(dir.path(), "ia.json", INSTANCES_A),
                write(dir.path(), "ib.json", INSTANCES_B),
            ],
        );
        let d = load(&source, &opts(1)).unwrap();
        let ids: Vec<&str> = d.samples.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, ["1", "2", "5", "4"]);
        assert_eq!(d.stats.loaded, 5);
        // Captions attach in file order across files.
        assert_eq!(by_id(&d, "1").captions, ["one first", "one from b"]);
        // Category ids differ per file; names are what count.
        assert_eq!(by_id(&d, "5").labels.labels(), ["dog"]);
        assert!(by_id(&d, "5").image.is_none());
        // With min count 2: {cat} occurs for 2 and 4, {dog} only for 5, {cat, dog} only for 1.
        let d2 = load(&source, &opts(2)).unwrap();
        let ids: Vec<&str> = d2.samples.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, ["2", "4"]);
        assert_eq!(d2.stats.dropped_rare, 2);
        assert_eq!(d2.stats.label_sets, 1);
        assert_ne!(d.fingerprint, d2.fingerprint);
    }

    #[test]
    fn label_only_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let d = load(
            &coco(vec![], vec![write(dir.path(), "i.json", INSTANCES_A)]),
            &opts(1),
        )
        .unwrap();
        let ids: Vec<&str> = d.samples.iter().map(|s| s.id.0.as_str()).collect();
        assert_eq!(ids, ["1", "2", "4"]);
        assert!(d.samples.iter().all(|s| s.captions.is_empty()));
    }

    #[test]
    fn captions_alone_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_err(&coco(vec![write(dir.path(), "c.json", CAPTIONS_A)], vec![]));
        assert!(err.contains("needs at least one instances file"), "{err}");
    }

    #[test]
    fn fingerprint_follows_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let i = write(dir.path(), "i.json", INSTANCES_A);
        let a = load(&coco(vec![], vec![i.clone()]), &opts(1)).unwrap();
        let again = load(&coco(vec![], vec![i.clone()]), &opts(1)).unwrap();
        assert_eq!(a.fingerprint, again.fingerprint);
        std::fs::write(&i, INSTANCES_A.replace("\"cat\"", "\"kitten\"")).unwrap();
        let changed = load(&coco(vec![], vec![i]), &opts(1)).unwrap();
        assert_ne!(a.fingerprint, changed.fingerprint);
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("captions_val2017.json");
        let err = load_err(&coco(
            vec![missing],
            vec![write(dir.path(), "i.json", INSTANCES_A)],
        ));
        assert!(err.contains("captions_val2017.json: cannot read:"), "{err}");
    }

    #[test]
    fn malformed_json_has_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(
            dir.path(),
            "i.json",
            "{\n  \"images\": [\n    {\"id\": 1,, }\n]}",
        );
        let err = load_err(&coco(vec![], vec![bad]));
        assert!(err.contains("i.json:3:14: key must be a string"), "{err}");
    }

    #[test]
    fn wrong_type_has_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let text = INSTANCES_A.replace("\"image_id\": 2,", "\"image_id\": \"2\",");
        let err = load_err(&coco(vec![], vec![write(dir.path(), "i.json", &text)]));
        assert!(err.contains("i.json:12:31: "), "{err}");
        assert!(
            err.contains("invalid type: string \"2\", expected u64"),
            "{err}"
        );
    }

    #[test]
    fn missing_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"images": [], "annotations": []}"#;
        let err = load_err(&coco(vec![], vec![write(dir.path(), "i.json", text)]));
        assert!(
            err.contains("i.json:1:") && err.contains("missing field `categories`"),
            "{err}"
        );
    }

    #[test]
    fn annotation_without_image_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = CAPTIONS_A.replace(
            "\"id\": 12, \"image_id\": 2",
            "\"id\": 12, \"image_id\": 99",
        );
        let err = load_err(&coco(
            vec![write(dir.path(), "c.json", &text)],
            vec![write(dir.path(), "i.json", INSTANCES_A)],
        ));
        assert_eq!(
            err,
            format!(
                "{}: annotation 12 (annotations[2]): image_id 99 has no entry in this file's images[]",
                dir.path().join("c.json").display()
            )
        );
        // Instances annotations too; an image listed only in another file does not count.
        let text = INSTANCES_B.replace("\"image_id\": 5", "\"image_id\": 1");
        let err = load_err(&coco(
            vec![],
            vec![
                write(dir.path(), "ia.json", INSTANCES_A),
                write(dir.path(), "ib.json", &text),
            ],
        ));
        assert!(
            err.contains("ib.json: annotation 200 (annotations[0]): image_id 1 "),
            "{err}"
        );
    }

    #[test]
    fn unknown_category_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = INSTANCES_A.replace(
            "\"id\": 103, \"image_id\": 2, \"category_id\": 17",
            "\"id\": 103, \"image_id\": 2, \"category_id\": 90",
        );
        let err = load_err(&coco(vec![], vec![write(dir.path(), "i.json", &text)]));
        assert!(err.contains("i.json: annotation 103 (annotations[3]): category_id 90 (image 2) is not in categories[]"), "{err}");
    }

    #[test]
    fn duplicate_image_in_one_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = CAPTIONS_A.replace(
            "{\"id\": 3, \"file_name\": \"000003.jpg\"}",
            "{\"id\": 1, \"file_name\": \"000001.jpg\"}",
        );
        let err = load_err(&coco(
            vec![write(dir.path(), "c.json", &text)],
            vec![write(dir.path(), "i.json", INSTANCES_A)],
        ));
        assert!(
            err.contains("c.json: sample 1: listed twice in images[]"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_file_names_across_files_name_both() {
        let dir = tempfile::tempdir().unwrap();
        let text = CAPTIONS_B.replace(
            "{\"id\": 1, \"file_name\": \"000001.jpg\"}",
            "{\"id\": 1, \"file_name\": \"other.jpg\"}",
        );
        let err = load_err(&coco(
            vec![
                write(dir.path(), "ca.json", CAPTIONS_A),
                write(dir.path(), "cb.json", &text),
            ],
            vec![write(dir.path(), "i.json", INSTANCES_A)],
        ));
        assert!(
            err.contains(
                "cb.json: sample 1: file_name \"other.jpg\" differs from \"000001.jpg\" in "
            ),
            "{err}"
        );
        assert!(err.ends_with("ca.json"), "{err}");
    }

    const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/coco-sample");

    #[test]
    fn real_coco_sample() {
        let root = Path::new(SAMPLE);
        let captions = root.join("annotations/captions.json");
        let instances = root.join("annotations/instances.json");
        if !captions.exists() || !instances.exists() {
            eprintln!("skipped: the COCO sample is not at {}", root.display());
            return;
        }
        let source = Source::Coco {
            captions: vec![captions],
            instances: vec![instances],
            images: Some(root.join("images")),
        };
        // Everything labelled, min count 1. The README's "219 label sets" counts the empty one.
        let all = load(&source, &opts(1)).unwrap();
        assert_eq!(all.stats.loaded, 258);
        assert_eq!(all.stats.dropped_unlabelled, 3);
        assert_eq!(all.samples.len(), 255);
        assert_eq!(all.stats.label_sets, 218);
        assert!(all.samples.iter().all(|s| s.captions.len() == 5));
        let first = &all.samples[0];
        assert_eq!(first.id.0, "139");
        let want = [
            "book",
            "chair",
            "clock",
            "dining table",
            "microwave",
            "person",
        ];
        assert_eq!(&first.labels.labels()[..6], want);
        assert_eq!(first.labels.labels().len(), 10);
        assert_eq!(
            first.captions[0],
            "A woman stands in the dining area at the table."
        );
        assert_eq!(
            first.image.as_deref(),
            Some(root.join("images/000000000139.jpg").as_path())
        );
        assert!(first.image.as_ref().unwrap().exists());
        for gone in ["58636", "226111", "262284"] {
            assert!(
                all.samples.iter().all(|s| s.id.0 != gone),
                "{gone} has no instances"
            );
        }

        // Default rule: 60 labelled images share a label set with another (63 in the README,
        // which counts the 3 unlabelled images as one label set of 3).
        let common = load(&source, &opts(2)).unwrap();
        assert_eq!(common.samples.len(), 60);
        assert_eq!(common.stats.dropped_rare, 195);
        assert_eq!(common.stats.label_sets, 23);
        let toilets: Vec<&str> = common
            .samples
            .iter()
            .filter(|s| s.labels.labels() == ["toilet"])
            .map(|s| s.id.0.as_str())
            .collect();
        assert_eq!(
            toilets,
            ["6818", "60760", "89232", "191381", "360772", "458054"]
        );
        let count = |want: &[&str]| {
            common
                .samples
                .iter()
                .filter(|s| s.labels.labels() == want)
                .count()
        };
        assert_eq!(count(&["boat", "person"]), 4);
        assert_eq!(count(&["sink", "toilet"]), 4);
    }
}
