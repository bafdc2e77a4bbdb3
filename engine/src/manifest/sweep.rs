//! Sweeps: one `[[runs]]` table with a `sweep` expands into the cross product of its values.
//!
//! ```toml
//! [[runs]]
//! name = "{encoder}_{captions}"
//! parts = [{ encoder = "minilm" }]
//! sweep = { captions = ["concat", "random"], "parts.0.encoder" = ["minilm", "mpnet"] }
//! ```
//! Each sweep key is a dotted path inside the run (numbers index arrays). The generated name fills
//! `{key}` placeholders (full key or its last segment); without placeholders the values are
//! appended: `text_concat_minilm`. Keys expand in sorted order, the last varying fastest.
//!
//! Both the number of runs and their names are checked before they are built, as a few lines of
//! sweep multiply: through the `manifest` fuzz target, a 340-byte cross product of 10^7 runs and
//! 10^4 runs named by 250 KB each both ran out of memory.

use std::path::Path;

use super::schema::Run;
use super::{Context, KeyPath, MAX_RUN_NAME_BYTES, ManifestError};

/// The most runs a manifest may expand into: far more than a report can usefully compare.
const MAX_RUNS: usize = 10_000;

/// Expands every run; each result carries the index of the `[[runs]]` table it came from.
pub(crate) fn expand(runs: &[Run], ctx: &Context) -> Result<Vec<(usize, Run)>, ManifestError> {
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let at = KeyPath::default().name("runs").index(i);
        let count = (run.sweep.values()).try_fold(1usize, |n, values| n.checked_mul(values.len()));
        if count.is_none_or(|count| count > MAX_RUNS - out.len()) {
            let at = if run.sweep.is_empty() {
                at
            } else {
                at.name("sweep")
            };
            return Err(ctx.error(
                &at,
                format!(
                    "the manifest expands into more than {MAX_RUNS} runs, the most it may declare"
                ),
            ));
        }
        if run.sweep.is_empty() {
            out.push((i, run.clone()));
            continue;
        }
        for combination in cross_product(run) {
            out.push((i, apply(run, &combination, i, ctx)?));
        }
    }
    Ok(out)
}

type Combination<'a> = Vec<(&'a str, &'a toml::Value)>;

fn cross_product(run: &Run) -> Vec<Combination<'_>> {
    let mut combos: Vec<Combination> = vec![Vec::new()];
    for (key, values) in &run.sweep {
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut next = combo.clone();
                    next.push((key.as_str(), v));
                    next
                })
            })
            .collect();
    }
    combos
}

fn apply(
    base: &Run,
    combination: &Combination,
    origin: usize,
    ctx: &Context,
) -> Result<Run, ManifestError> {
    let mut plain = base.clone();
    plain.sweep.clear();
    let mut value = toml::Value::try_from(&plain).expect("a run serialises to TOML");
    let at = |key: &str| {
        KeyPath::default()
            .name("runs")
            .index(origin)
            .name("sweep")
            .name(key)
    };
    for (key, v) in combination {
        set_path(&mut value, key, (*v).clone())
            .map_err(|why| ctx.error(&at(key), format!("cannot sweep: {why}")))?;
    }
    let mut run: Run = value.try_into().map_err(|e: toml::de::Error| {
        let keys: Vec<&str> = combination.iter().map(|(k, _)| *k).collect();
        ctx.error(
            &at(keys[0]),
            format!("swept value rejected: {}", e.message().trim()),
        )
    })?;
    run.name = sweep_name(&base.name, combination).ok_or_else(|| {
        let at = KeyPath::default().name("runs").index(origin).name("name");
        ctx.error(
            &at,
            format!(
                "swept names grow past {MAX_RUN_NAME_BYTES} bytes, the most a run name may have"
            ),
        )
    })?;
    Ok(run)
}

fn set_path(root: &mut toml::Value, dotted: &str, new: toml::Value) -> Result<(), String> {
    let mut slot = root;
    for seg in dotted.split('.') {
        slot = match (slot, seg.parse::<usize>()) {
            (toml::Value::Array(items), Ok(i)) => {
                let len = items.len();
                items
                    .get_mut(i)
                    .ok_or(format!("index {i} is past the {len} items"))?
            }
            (toml::Value::Table(table), _) => {
                table.entry(seg).or_insert(toml::Value::Boolean(false))
            }
            _ => return Err(format!("`{seg}` does not name a table key or array index")),
        };
    }
    *slot = new;
    Ok(())
}

/// The run's name, or `None` when it would be longer than [`MAX_RUN_NAME_BYTES`]: each
/// placeholder's growth is checked before it is replaced, as a long value times many placeholders
/// is a large string.
fn sweep_name(base: &str, combination: &Combination) -> Option<String> {
    let name = if !base.contains('{') {
        let values: Vec<String> = combination.iter().map(|(_, v)| short(v)).collect();
        format!("{base}_{}", values.join("_"))
    } else {
        combination
            .iter()
            .try_fold(base.to_string(), |name, (key, v)| {
                let value = short(v);
                let last = key.rsplit('.').next().unwrap_or(key);
                [format!("{{{key}}}"), format!("{{{last}}}")]
                    .iter()
                    .try_fold(name, |name, placeholder| {
                        let growth = value.len().saturating_sub(placeholder.len());
                        let grown = name.len()
                            + name
                                .matches(placeholder.as_str())
                                .count()
                                .saturating_mul(growth);
                        (grown <= MAX_RUN_NAME_BYTES).then(|| name.replace(placeholder, &value))
                    })
            })?
    };
    (name.len() <= MAX_RUN_NAME_BYTES).then_some(name)
}

/// A value as it reads in a name: strings bare (file paths by their stem), others as TOML.
fn short(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s.contains('/') || s.ends_with(".npy") => Path::new(s)
            .file_stem()
            .map_or_else(|| s.clone(), |stem| stem.to_string_lossy().into_owned()),
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(toml_text: &str) -> Run {
        toml::from_str(toml_text).unwrap()
    }

    fn ctx() -> Context<'static> {
        Context {
            path: Path::new("m.toml"),
            text: "",
        }
    }

    #[test]
    fn expands_the_cross_product_with_readable_names() {
        let r = run(r#"
            name = "{encoder}_{captions}"
            parts = [{ encoder = "minilm" }]
            sweep = { captions = ["concat", "random"], "parts.0.encoder" = ["minilm", "mpnet"] }
        "#);
        let runs = expand(&[r], &ctx()).unwrap();
        let names: Vec<&str> = runs.iter().map(|(_, r)| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "minilm_concat",
                "mpnet_concat",
                "minilm_random",
                "mpnet_random"
            ]
        );
        assert_eq!(runs[1].1.parts[0].encoder.as_deref(), Some("mpnet"));
        assert!(
            runs.iter()
                .all(|(origin, r)| *origin == 0 && r.sweep.is_empty())
        );
    }

    #[test]
    fn appends_values_without_placeholders() {
        let r = run(r#"
            name = "fused"
            parts = [{ precomputed = "a.npy" }, { precomputed = "b.npy" }]
            sweep = { "parts.1.weight" = [0.5, 2.0], "parts.0.precomputed" = ["x/text.npy"] }
        "#);
        let runs = expand(&[r], &ctx()).unwrap();
        let names: Vec<&str> = runs.iter().map(|(_, r)| r.name.as_str()).collect();
        assert_eq!(names, ["fused_text_0.5", "fused_text_2.0"]);
        assert_eq!(runs[1].1.parts[1].weight, 2.0);
    }

    #[test]
    fn rejects_a_path_that_leaves_the_run() {
        let r = run(r#"
            name = "x"
            parts = [{ precomputed = "a.npy" }]
            sweep = { "parts.3.weight" = [1.0] }
        "#);
        let err = expand(&[r], &ctx()).unwrap_err().to_string();
        assert!(err.contains("index 3 is past the 1 items"), "{err}");
    }

    #[test]
    fn refuses_more_runs_than_the_limit_before_building_them() {
        // 7 keys of 10 values, 10^7 runs, ran out of memory (through the `manifest` fuzz target).
        let values = format!("[{}]", ["1"; 10].join(", "));
        let sweep = |keys: usize| {
            let keys: Vec<String> = (0..keys).map(|k| format!("k{k} = {values}")).collect();
            let text = format!(
                "name = \"x\"\nparts = [{{ precomputed = \"a.npy\" }}]\nsweep = {{ {} }}",
                keys.join(", ")
            );
            expand(&[run(&text)], &ctx()).unwrap_err().to_string()
        };
        let want = "m.toml:1:1: runs[0].sweep: the manifest expands into more than 10000 runs, \
                    the most it may declare";
        assert_eq!(sweep(7), want);
        // 10^20 combinations overflow a usize.
        assert_eq!(sweep(20), want);

        // The limit counts every table's runs.
        let seeds: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
        let weights: Vec<String> = (1..=100).map(|i| format!("{i}.5")).collect();
        let full = run(&format!(
            "name = \"x\"\nparts = [{{ precomputed = \"a.npy\" }}]\n\
             sweep = {{ caption_seed = [{}], \"parts.0.weight\" = [{}] }}",
            seeds.join(", "),
            weights.join(", ")
        ));
        let plain = run("name = \"y\"\nparts = [{ precomputed = \"a.npy\" }]");
        assert_eq!(
            expand(std::slice::from_ref(&full), &ctx()).unwrap().len(),
            MAX_RUNS
        );
        let err = expand(&[full, plain], &ctx()).unwrap_err().to_string();
        assert_eq!(
            err,
            "m.toml:1:1: runs[1]: the manifest expands into more than 10000 runs, the most it may \
             declare"
        );
    }

    #[test]
    fn refuses_long_names_before_building_them() {
        // 10^4 runs named by 250 copies of a 1000-byte value ran out of memory (through the
        // `manifest` fuzz target).
        let expand_name = |name: &str, value: &str| {
            let text = format!(
                "name = \"{name}\"\nparts = [{{ precomputed = \"a.npy\" }}]\n\
                 sweep = {{ family = [\"{value}\"] }}"
            );
            let runs = expand(&[run(&text)], &ctx()).map_err(|e| e.to_string())?;
            Ok::<String, String>(runs[0].1.name.clone())
        };
        let too_long = "m.toml:1:1: runs[0].name: swept names grow past 200 bytes, the most a run \
                        name may have";
        let long = "x".repeat(1000);
        assert_eq!(
            expand_name(&"{family}".repeat(250), &long).unwrap_err(),
            too_long
        );
        let x200 = "x".repeat(200);
        assert_eq!(expand_name("{family}", &x200).unwrap(), x200);
        assert_eq!(expand_name("{family}", &long[..201]).unwrap_err(), too_long);
        // Without placeholders: "n" + "_" + the value.
        assert_eq!(expand_name("n", &long[..198]).unwrap().len(), 200);
        assert_eq!(expand_name("n", &long[..199]).unwrap_err(), too_long);
    }

    #[test]
    fn rejects_a_value_of_the_wrong_type() {
        let r = run(r#"
            name = "x"
            parts = [{ precomputed = "a.npy" }]
            sweep = { normalize_parts = ["yes"] }
        "#);
        let err = expand(&[r], &ctx()).unwrap_err().to_string();
        assert!(err.contains("swept value rejected"), "{err}");
    }
}
