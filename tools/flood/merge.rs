//! `measure --merge`: a report written by several runs. One locked measurement must stay
//! short on a shared machine, so the attacks are measured a few at a time; each run then
//! rewrites the report with its own rows and keeps the earlier report's rows of every
//! (attack, model) it did not measure again, in the report's order (attacks, then models).
//!
//! Every row is one line in each format (a CSV line, a JSON object, a Markdown table row, a
//! notes bullet with its indented lines), so the earlier report is read back line by line;
//! the Markdown table is laid out again so its columns line up.

use crate::attacks::Attack;
use crate::results::{Cell, Table};
use clap::ValueEnum;
use udpft::server::Model;

/// Where a row sorts: its attack's and its model's places in the report's order.
type Key = (usize, usize);

fn key(attack: &str, model: &str) -> Option<Key> {
    let attack = Attack::from_str(attack.trim(), false).ok()?;
    let model: Model = model.trim().parse().ok()?;
    let a = Attack::ALL.iter().position(|&x| x == attack)?;
    let m = Model::ALL.iter().position(|&x| x == model)?;
    Some((a, m))
}

/// The rows of `new` and the rows of `old` whose keys `new` lacks, sorted by key.
fn merged<T>(new: Vec<(Key, T)>, old: Vec<(Key, T)>) -> Vec<T> {
    let mut rows: Vec<(Key, T)> = old
        .into_iter()
        .filter(|(k, _)| !new.iter().any(|(n, _)| n == k))
        .collect();
    rows.extend(new);
    rows.sort_by_key(|(k, _)| *k);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The CSV `new` (header, then rows) with the rows of `old` it did not measure again.
pub fn csv(new: &str, old: &str) -> String {
    let rows = |text: &str| -> Vec<(Key, String)> {
        text.lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.splitn(3, ',');
                let k = key(fields.next()?, fields.next()?)?;
                Some((k, line.to_owned()))
            })
            .collect()
    };
    let header = new.lines().next().unwrap_or_default();
    let mut out = format!("{header}\n");
    for line in merged(rows(new), rows(old)) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The JSON array `new` (one object a line) with the objects of `old` it did not measure
/// again.
pub fn json(new: &str, old: &str) -> String {
    let rows = |text: &str| -> Vec<(Key, String)> {
        text.lines()
            .filter_map(|line| {
                let object = line.trim().trim_end_matches(',');
                let rest = object.strip_prefix("{\"attack\": \"")?;
                let (attack, rest) = rest.split_once('"')?;
                let model = rest.strip_prefix(", \"model\": \"")?.split('"').next()?;
                Some((key(attack, model)?, object.to_owned()))
            })
            .collect()
    };
    let objects = merged(rows(new), rows(old));
    let mut out = String::from("[\n");
    for (i, object) in objects.iter().enumerate() {
        let comma = if i + 1 < objects.len() { "," } else { "" };
        out.push_str(&format!("  {object}{comma}\n"));
    }
    out.push_str("]\n");
    out
}

/// The cells of a Markdown table row, trimmed.
fn cells(line: &str) -> Option<Vec<String>> {
    let inner = line.strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(|c| c.trim().to_owned()).collect())
}

/// A cell read back from its text: a number keeps its decimals (so it is shown the same
/// and right-aligned), anything else is text.
fn cell(text: &str) -> Cell {
    match text.parse::<f64>() {
        Ok(value) if !text.is_empty() => {
            let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
            Cell::num(value, decimals)
        }
        _ => Cell::text(text),
    }
}

/// The Markdown table `new` with the rows of the table in `old` it did not measure again,
/// laid out again as one table.
pub fn markdown_table(new: &str, old: &str) -> String {
    let rows = |text: &str| -> Vec<(Key, Vec<String>)> {
        text.lines()
            .filter_map(cells)
            .filter_map(|row| Some((key(row.first()?, row.get(1)?)?, row)))
            .collect()
    };
    let Some(headers) = new.lines().next().and_then(cells) else {
        return new.to_owned();
    };
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = Table::new(&headers);
    for row in merged(rows(new), rows(old)) {
        if row.len() == headers.len() {
            table.push(row.iter().map(|t| cell(t)).collect());
        }
    }
    table.to_markdown()
}

/// The notes bullets `new` (each a `* **attack / model**` line and the indented lines under
/// it) with the bullets of `old` it did not measure again.
pub fn bullets(new: &[String], old: &str) -> Vec<String> {
    let bullet_key = |block: &str| -> Option<Key> {
        let named = block.strip_prefix("* **")?.split("**").next()?;
        let (attack, model) = named.split_once(" / ")?;
        key(attack, model)
    };
    let mut old_blocks: Vec<String> = Vec::new();
    for line in old.lines() {
        if line.starts_with("* **") {
            old_blocks.push(format!("{line}\n"));
        } else if line.starts_with("  ") && !old_blocks.is_empty() {
            let last = old_blocks.len() - 1;
            old_blocks[last].push_str(&format!("{line}\n"));
        }
    }
    let keyed = |blocks: Vec<String>| -> Vec<(Key, String)> {
        blocks
            .into_iter()
            .filter_map(|b| Some((bullet_key(&b)?, b)))
            .collect()
    };
    merged(keyed(new.to_vec()), keyed(old_blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_keeps_rows_not_measured_again_in_report_order() {
        let old = "attack,model,x\npending,loop,1\nfds,table,2\ncontrol,table,3\n";
        let new = "attack,model,x\nfds,table,9\ncontrol,loop,8\n";
        assert_eq!(
            csv(new, old),
            "attack,model,x\ncontrol,loop,8\ncontrol,table,3\npending,loop,1\nfds,table,9\n"
        );
    }

    #[test]
    fn json_keeps_objects_not_measured_again_with_commas_between() {
        let old = "[\n  {\"attack\": \"pending\", \"model\": \"loop\", \"x\": 1},\n  {\"attack\": \"fds\", \"model\": \"table\", \"x\": 2}\n]\n";
        let new = "[\n  {\"attack\": \"fds\", \"model\": \"table\", \"x\": 9}\n]\n";
        assert_eq!(
            json(new, old),
            "[\n  {\"attack\": \"pending\", \"model\": \"loop\", \"x\": 1},\n  {\"attack\": \"fds\", \"model\": \"table\", \"x\": 9}\n]\n"
        );
    }

    #[test]
    fn markdown_rows_are_laid_out_again_as_one_table() {
        let old = "title\n\n| attack | model | ls × |\n| ------ | ----- | ---: |\n| strangers | fork | 1.25 |\n\nlegend | not a row\n";
        let new =
            "| attack | model | ls × |\n| ------ | ----- | ---: |\n| pending | loop | 0.9 |\n";
        assert_eq!(
            markdown_table(new, old),
            "| attack    | model | ls × |\n| --------- | ----- | ---: |\n| pending   | loop  |  0.9 |\n| strangers | fork  | 1.25 |\n"
        );
    }

    #[test]
    fn bullets_keep_their_indented_lines() {
        let old = "### notes\n\n* **drip / fork** (x): a.\n  * loaded failure: b\n* **pending / loop** (y): c.\n\nRerun: …\n";
        let new = vec!["* **pending / loop** (z): new.\n".to_owned()];
        assert_eq!(
            bullets(&new, old),
            vec![
                "* **pending / loop** (z): new.\n".to_owned(),
                "* **drip / fork** (x): a.\n  * loaded failure: b\n".to_owned(),
            ]
        );
    }
}
