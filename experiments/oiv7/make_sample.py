#!/usr/bin/env python3
"""Turn the shared COCO sample into Open Images V7 files, in the official formats.

The `oiv7` dataset format is tested and demonstrated on this sample: the 258 COCO images with
their categories as image-level labels and their captions as Localized Narratives, so that
`embedlab` can run experiments/oiv7.toml without downloading Open Images.

Writes into OUT (default: experiments/oiv7/sample, which git ignores - nothing derived from
../shared/data may be committed):

  oidv7-class-descriptions.csv                 LabelName,DisplayName (with its header); one
                                               synthetic /m/... id per COCO category, display
                                               name = the category name
  sample-annotations-human-imagelabels.csv     ImageID,Source,LabelName,Confidence; one
                                               Confidence 1 row per (image, category), plus a few
                                               Confidence 0 rows (verified absent)
  sample_localized_narratives.jsonl            one line per COCO caption with every official
                                               field (empty timed_caption and traces)

ImageID is the COCO file stem (e.g. 000000000139), so `images` can point at the sample's
images/ folder. Images are listed in the order of captions.json's images[], captions in its
annotations[] order: the oiv7 dataset then holds the same samples, in the same order, with the
same captions and label sets as the coco format reading the original files.

Usage: python3 experiments/oiv7/make_sample.py [--coco DIR] [--out DIR]
Standard library only.
"""

import argparse
import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def label_id(category_id):
    # Official ids look like /m/0dl9sv; these are made up, one per COCO category.
    return "/m/0coco%04d" % category_id


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--coco",
        default=os.path.join(HERE, "..", "..", "..", "shared", "data", "coco-sample"),
        help="the COCO sample (annotations/captions.json, annotations/instances.json)",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "sample"))
    args = parser.parse_args()

    annotations = os.path.join(args.coco, "annotations")
    if not os.path.isdir(annotations):
        sys.exit("%s: not found (the shared COCO sample)" % annotations)
    with open(os.path.join(annotations, "captions.json"), encoding="utf-8") as f:
        captions = json.load(f)
    with open(os.path.join(annotations, "instances.json"), encoding="utf-8") as f:
        instances = json.load(f)
    os.makedirs(args.out, exist_ok=True)

    stems = {}
    order = []
    for image in captions["images"] + instances["images"]:
        if image["id"] not in stems:
            stems[image["id"]] = os.path.splitext(image["file_name"])[0]
            order.append(image["id"])

    categories = sorted(instances["categories"], key=lambda c: c["id"])
    with open(os.path.join(args.out, "oidv7-class-descriptions.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["LabelName", "DisplayName"])
        for category in categories:
            writer.writerow([label_id(category["id"]), category["name"]])

    positives = {}
    for annotation in instances["annotations"]:
        labels = positives.setdefault(annotation["image_id"], [])
        if annotation["category_id"] not in labels:
            labels.append(annotation["category_id"])
    with open(
        os.path.join(args.out, "sample-annotations-human-imagelabels.csv"), "w", newline="", encoding="utf-8"
    ) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ImageID", "Source", "LabelName", "Confidence"])
        for n, image_id in enumerate(order):
            labels = positives.get(image_id, [])
            for category_id in labels:
                writer.writerow([stems[image_id], "verification", label_id(category_id), "1"])
            # A verified-absent label on every 7th image, and on every unlabelled one (so that it
            # is in the file and counts as unlabelled, as in the coco format).
            if n % 7 == 0 or not labels:
                absent = next(c["id"] for c in categories if c["id"] not in labels)
                writer.writerow([stems[image_id], "crowdsource-verified", label_id(absent), "0"])

    with open(os.path.join(args.out, "sample_localized_narratives.jsonl"), "w", encoding="utf-8") as f:
        for annotation in captions["annotations"]:
            stem = stems[annotation["image_id"]]
            narrative = {
                "dataset_id": "coco_sample",
                "image_id": stem,
                "annotator_id": annotation["id"] % 100,
                "caption": annotation["caption"],
                "timed_caption": [],
                "traces": [],
                "voice_recording": "coco_sample/coco_sample_%s_%d.ogg" % (stem, annotation["id"]),
            }
            f.write(json.dumps(narrative) + "\n")
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
