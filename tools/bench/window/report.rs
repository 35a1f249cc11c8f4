//! The report of `udpft-bench window`: one row per cell (the CSV and JSON), a table of
//! goodput by window per chunk (the README's), the references, the closing figures of issue
//! 10 §6 as ratios of one run, and an SVG chart per chunk.

use super::{granted_windows, Bench, Delay, Key, Path, Round, WindowArgs};
use crate::procfs;
use crate::results::{human_bytes, median, micros, Cell, Table};
use crate::svg::{LineChart, Series, YScale};
use crate::transfer::Download;
use std::fmt::Write as _;
use std::time::Duration;
use udpft::proto::wire::MAX_CHUNK;
use udpft::proto::Config;

/// The median over rounds of `f`, skipping rounds where it has no value.
fn over_rounds(rounds: &[Round], f: impl Fn(&Round) -> Option<f64>) -> f64 {
    median(&rounds.iter().filter_map(f).collect::<Vec<_>>())
}

/// The tables of a finished run.
pub(super) struct Report {
    /// One row per cell: the CSV and JSON.
    pub(super) cells: Table,
    references: Table,
    figures: Table,
    /// Per chunk: goodput by (path, loss) × window.
    pivots: Vec<(u16, Table)>,
}

impl Report {
    pub(super) fn new(args: &WindowArgs, bench: &Bench<'_>, rounds: &[Round]) -> Self {
        let mut cells = Table::new(&[
            "chunk B",
            "delay each way",
            "path",
            "loss",
            "window asked",
            "window granted",
            "size B",
            "rounds",
            "goodput MB/s",
            "RTT µs",
            "ceiling W×chunk÷RTT MB/s",
            "blast MB/s",
            "closed-loop relay MB/s",
            "÷ min(ceiling, blast, relay)",
            "÷ window 1",
            "dup data",
            "client srtt µs",
            "server cwnd mean",
            "cwnd cuts loss/timeout/delay",
            "slow start resumed",
        ]);
        let mut pivots = Vec::new();
        for &chunk in &args.chunks {
            let granted = granted_windows(args, chunk);
            let mut headers = vec!["delay each way".to_owned(), "loss".to_owned()];
            headers.extend(granted.values().map(|asked| {
                let names: Vec<String> = asked.iter().map(u16::to_string).collect();
                format!("W {}", names.join("/"))
            }));
            let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            let mut pivot = Table::new(&header_refs);
            for &delay in &args.delay {
                for (loss, &rate) in args.loss.iter().enumerate() {
                    let path = Path::of(delay, rate);
                    let mut row = vec![Cell::text(delay.name()), Cell::text(percent(rate))];
                    for (&window, asked) in &granted {
                        let key = Key {
                            chunk,
                            delay,
                            loss,
                            window,
                        };
                        let goodput = over_rounds(rounds, |r| r.cells.get(&key).map(|d| d.goodput));
                        row.push(Cell::num(goodput, 1));
                        let one = Key { window: 1, ..key };
                        let stats = |f: &dyn Fn(&Download) -> f64| {
                            over_rounds(rounds, |r| r.cells.get(&key).map(f))
                        };
                        // A counter of the server's window over the rounds (NaN: no log line).
                        let count = |f: &dyn Fn(&super::ServerWindow) -> u64| {
                            over_rounds(rounds, |r| r.windows.get(&key).map(|w| f(w) as f64))
                        };
                        cells.push(vec![
                            Cell::int(u64::from(chunk)),
                            Cell::text(delay.name()),
                            Cell::text(path.name()),
                            Cell::num(rate, 3),
                            Cell::text(
                                asked
                                    .iter()
                                    .map(u16::to_string)
                                    .collect::<Vec<_>>()
                                    .join("/"),
                            ),
                            Cell::int(u64::from(window)),
                            bench
                                .sizes
                                .get(&key)
                                .map_or_else(Cell::missing, |&f| Cell::int(bench.files[f].size)),
                            Cell::int(
                                rounds.iter().filter(|r| r.cells.contains_key(&key)).count() as u64
                            ),
                            Cell::num(goodput, 2),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    r.refs(chunk, path).map(|p| micros(p.rtt.median))
                                }),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    r.ceiling(&key, &args.loss).map(|c| c.ceiling)
                                }),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    r.ceiling(&key, &args.loss).map(|c| c.blast)
                                }),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    r.ceiling(&key, &args.loss).map(|c| c.relay)
                                }),
                                1,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    let estimate = r.ceiling(&key, &args.loss)?;
                                    Some(r.cells.get(&key)?.goodput / estimate.min())
                                }),
                                2,
                            ),
                            Cell::num(
                                over_rounds(rounds, |r| {
                                    Some(r.cells.get(&key)?.goodput / r.cells.get(&one)?.goodput)
                                }),
                                2,
                            ),
                            Cell::num(stats(&|d| d.report.stats.duplicates as f64), 0),
                            Cell::num(stats(&|d| d.report.stats.srtt.map_or(f64::NAN, micros)), 1),
                            Cell::num(
                                over_rounds(rounds, |r| r.windows.get(&key).map(|w| w.mean)),
                                1,
                            ),
                            {
                                let (l, t, d) = (
                                    count(&|w| w.cut_loss),
                                    count(&|w| w.cut_timeout),
                                    count(&|w| w.cut_delay),
                                );
                                if l.is_finite() {
                                    Cell::text(format!("{l:.0}/{t:.0}/{d:.0}"))
                                } else {
                                    Cell::missing()
                                }
                            },
                            {
                                let resumed = count(&|w| w.resumed);
                                if resumed.is_finite() {
                                    Cell::num(resumed, 0)
                                } else {
                                    Cell::missing()
                                }
                            },
                        ]);
                    }
                    pivot.push(row);
                }
                // The ceiling of each window on this delay's path.
                let mut row = vec![Cell::text(delay.name()), Cell::text("ceiling")];
                for &window in granted.keys() {
                    let key = Key {
                        chunk,
                        delay,
                        loss: 0,
                        window,
                    };
                    row.push(Cell::num(
                        over_rounds(rounds, |r| r.ceiling(&key, &args.loss).map(|e| e.min())),
                        1,
                    ));
                }
                pivot.push(row);
            }
            pivots.push((chunk, pivot));
        }

        let mut references = Table::new(&[
            "chunk B",
            "reference",
            "path",
            "MB/s",
            "RTT µs (median)",
            "lost",
        ]);
        for &chunk in &args.chunks {
            let payload = usize::from(chunk);
            let mut paths: Vec<Path> = rounds[0]
                .refs
                .keys()
                .filter(|k| k.0 == chunk)
                .map(|k| k.1)
                .collect();
            paths.sort();
            for path in paths {
                references.push(vec![
                    Cell::int(u64::from(chunk)),
                    Cell::text("stop-and-wait ceiling (chunk ÷ RTT)"),
                    Cell::text(path.name()),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| p.rtt.ceiling_mb_s(1, chunk))
                        }),
                        1,
                    ),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| micros(p.rtt.median))
                        }),
                        1,
                    ),
                    Cell::num(
                        over_rounds(rounds, |r| r.refs(chunk, path).map(|p| p.rtt.lost as f64)),
                        0,
                    ),
                ]);
                let windows: Vec<u16> = rounds[0]
                    .refs(chunk, path)
                    .map(|p| p.relay.keys().copied().collect())
                    .unwrap_or_default();
                for window in windows {
                    references.push(vec![
                        Cell::int(u64::from(chunk)),
                        Cell::text(format!("closed-loop relay, window {window}")),
                        Cell::text(path.name()),
                        Cell::num(
                            over_rounds(rounds, |r| {
                                r.refs(chunk, path)?
                                    .relay
                                    .get(&window)
                                    .map(|x| x.mb_s(payload))
                            }),
                            1,
                        ),
                        Cell::missing(),
                        Cell::num(
                            over_rounds(rounds, |r| {
                                r.refs(chunk, path)?
                                    .relay
                                    .get(&window)
                                    .map(|x| x.stalls as f64)
                            }),
                            0,
                        ),
                    ]);
                }
                references.push(vec![
                    Cell::int(u64::from(chunk)),
                    Cell::text("one-way UDP blast"),
                    Cell::text(path.name()),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| p.blast.mb_s(payload))
                        }),
                        1,
                    ),
                    Cell::missing(),
                    Cell::num(
                        over_rounds(rounds, |r| {
                            r.refs(chunk, path).map(|p| p.blast.lost() as f64)
                        }),
                        0,
                    ),
                ]);
            }
            references.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::text("blocking stop-and-wait (busy-poll 0)"),
                Cell::text("direct"),
                Cell::num(
                    over_rounds(rounds, |r| r.blocking.get(&chunk).map(|d| d.goodput)),
                    1,
                ),
                Cell::missing(),
                Cell::missing(),
            ]);
            references.push(vec![
                Cell::int(u64::from(chunk)),
                Cell::text(format!("TCP copy (socat -b {chunk})")),
                Cell::text("direct"),
                Cell::num(
                    over_rounds(rounds, |r| r.tcp.get(&chunk).map(|c| c.goodput)),
                    1,
                ),
                Cell::missing(),
                Cell::missing(),
            ]);
        }

        Self {
            cells,
            references,
            figures: figures(args, rounds),
            pivots,
        }
    }

    pub(super) fn markdown(
        &self,
        args: &WindowArgs,
        load: &str,
        elapsed: Duration,
        failures: &[String],
    ) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "## Stop-and-wait vs pipelining: download goodput by window (loopback, medians of {} rounds)\n",
            args.rounds
        );
        let _ = writeln!(
            md,
            "`udpft-bench window` on {} CPU(s), load average (1, 5, 15 min) {load}; {:.0} s in all. \
             MB = 10^6 bytes. Every copy verified byte for byte.\n",
            procfs::cpus(),
            elapsed.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "### Figures (issue 10 §6), each the median of its rounds' own ratios\n"
        );
        md.push_str(&self.figures.to_markdown());
        for (chunk, pivot) in &self.pivots {
            let _ = writeln!(md, "\n### Goodput MB/s at {chunk}-byte chunks\n");
            md.push_str(&pivot.to_markdown());
        }
        let _ = writeln!(
            md,
            "\n`W a/b` = windows a and b asked for, both granted a (the server grants at most \
             --max-window {} and 4 MiB of datagrams in flight). delay = added one way, each \
             way, by lossy-proxy (`none`: straight over loopback, or through a proxy adding \
             nothing where there is loss). ceiling = min(window × chunk ÷ RTT, blast, \
             closed-loop relay) of the loss-free path of that delay: RTT the median of a \
             ping-pong of a Data-sized request and an Ack-sized reply through the same path, \
             blast a one-way UDP blast of the same datagrams through it (what the proxy \
             relays one way, with no replies to wait for), closed-loop relay that window of \
             Data-sized datagrams kept outstanding through it, each answered by an Ack-sized \
             (22-byte) reply and replaced by a new one, both ends blocking (what the proxy \
             relays clocked as a transfer is). The figures' ratios and the cells' \
             `÷ min(ceiling, blast, relay)` are set against that lowest of the three.\n",
            args.max_window
        );
        let _ = writeln!(md, "### References\n");
        md.push_str(&self.references.to_markdown());
        let _ = writeln!(
            md,
            "\nblocking stop-and-wait = window 1 with busy-polling off in client and server \
             (`--busy-poll 0`); the grid's cells use the defaults (adaptive busy-polling up to \
             50 µs). TCP copy = `socat -u` file to file over TCP on 127.0.0.1, from the \
             sender's start to both programs' exit. lost = pings unanswered (RTT), datagrams \
             not counted (blast), waits of 200 ms for a reply (closed-loop relay).\n"
        );
        let _ = writeln!(md, "### Every cell\n");
        md.push_str(&self.cells.to_markdown());
        let _ = writeln!(
            md,
            "\nsize = the file the cell moved: the smallest of {} … {} that its estimated \
             goodput (the first round's ceiling, scaled by what the same window reached at \
             the previous loss) needs for {} s, or the largest. ÷ window 1 = goodput ÷ the \
             stop-and-wait cell of the same path and loss. dup data = repeated Data \
             datagrams the client received (the server's retransmissions that proved \
             unnecessary, and duplicates). server cwnd mean = the server's congestion window \
             averaged over the time it sent (from its log line of the session); cwnd cuts = \
             its decreases on a loss read as congestion / after a timeout / by the delay \
             signal (a round's backlog above β, or slow start's exit), medians of rounds; \
             slow start resumed = its returns to slow start after an exit the next rounds \
             showed spurious (protocol.md §21.2), medians of rounds.",
            human_bytes(args.min_size.min(args.size)),
            human_bytes(args.size),
            args.cell_seconds
        );
        if !failures.is_empty() {
            let _ = writeln!(md, "\n### Failed measurements\n");
            for f in failures {
                let _ = writeln!(md, "* {f}");
            }
        }
        let _ = writeln!(
            md,
            "\nRerun: `udpft-bench window --rounds {} --out DIR` (`cargo build --release --bins` first).",
            args.rounds
        );
        md
    }

    pub(super) fn chart(
        &self,
        args: &WindowArgs,
        chunk: u16,
        rounds: &[Round],
        load: &str,
    ) -> LineChart {
        let granted = granted_windows(args, chunk);
        let mut series = Vec::new();
        for &delay in &args.delay {
            for (loss, &rate) in args.loss.iter().enumerate() {
                series.push(Series {
                    name: format!("+{} {}", delay.name(), percent(rate)),
                    values: granted
                        .keys()
                        .map(|&window| {
                            let key = Key {
                                chunk,
                                delay,
                                loss,
                                window,
                            };
                            Some(over_rounds(rounds, |r| {
                                r.cells.get(&key).map(|d| d.goodput)
                            }))
                            .filter(|v| v.is_finite())
                        })
                        .collect(),
                });
            }
        }
        LineChart {
            title: format!("Download goodput by window, {chunk}-byte chunks"),
            x_label: "window (chunks in flight)".into(),
            y_label: "goodput MB/s (log)".into(),
            categories: granted.keys().map(u16::to_string).collect(),
            series,
            y_scale: YScale::Log10,
            note: Some(format!(
                "udpft-bench window: loopback, delay each way / loss each way, medians of {} rounds; load {load}",
                args.rounds
            )),
        }
    }
}

/// Every cell of every round, beside that round's references: the raw numbers behind the
/// medians (NAME-rounds.csv).
pub(super) fn every_round(args: &WindowArgs, bench: &Bench<'_>, rounds: &[Round]) -> Table {
    let mut table = Table::new(&[
        "round",
        "chunk B",
        "delay each way",
        "loss",
        "window granted",
        "size B",
        "goodput MB/s",
        "RTT µs",
        "ceiling W×chunk÷RTT MB/s",
        "blast MB/s",
        "closed-loop relay MB/s",
        "blocking stop-and-wait MB/s",
        "TCP copy MB/s",
        "dup data",
        "server cwnd mean",
        "cwnd cuts loss",
        "cwnd cuts timeout",
        "cwnd cuts delay",
        "slow start resumed",
    ]);
    for (i, round) in rounds.iter().enumerate() {
        let mut keys: Vec<&Key> = round.cells.keys().collect();
        keys.sort();
        for key in keys {
            let d = &round.cells[key];
            let path = Path::of(key.delay, args.loss[key.loss]);
            let refs = round.refs(key.chunk, path);
            let or_missing =
                |v: Option<f64>, decimals| v.map_or_else(Cell::missing, |v| Cell::num(v, decimals));
            table.push(vec![
                Cell::int(i as u64 + 1),
                Cell::int(u64::from(key.chunk)),
                Cell::text(key.delay.name()),
                Cell::num(args.loss[key.loss], 3),
                Cell::int(u64::from(key.window)),
                bench
                    .sizes
                    .get(key)
                    .map_or_else(Cell::missing, |&f| Cell::int(bench.files[f].size)),
                Cell::num(d.goodput, 2),
                or_missing(refs.map(|p| micros(p.rtt.median)), 1),
                or_missing(round.ceiling(key, &args.loss).map(|c| c.ceiling), 1),
                or_missing(round.ceiling(key, &args.loss).map(|c| c.blast), 1),
                or_missing(round.ceiling(key, &args.loss).map(|c| c.relay), 1),
                or_missing(round.blocking.get(&key.chunk).map(|d| d.goodput), 1),
                or_missing(round.tcp.get(&key.chunk).map(|c| c.goodput), 1),
                Cell::int(d.report.stats.duplicates),
                or_missing(round.windows.get(key).map(|w| w.mean), 1),
                or_missing(round.windows.get(key).map(|w| w.cut_loss as f64), 0),
                or_missing(round.windows.get(key).map(|w| w.cut_timeout as f64), 0),
                or_missing(round.windows.get(key).map(|w| w.cut_delay as f64), 0),
                or_missing(round.windows.get(key).map(|w| w.resumed as f64), 0),
            ]);
        }
    }
    table
}

fn percent(rate: f64) -> String {
    format!("{}%", (rate * 1e4).round() / 1e2)
}

/// The closing figures of issue 10 §6, where the grid holds their cells.
fn figures(args: &WindowArgs, rounds: &[Round]) -> Table {
    let mut table = Table::new(&["figure", "measured", "aim"]);
    let loss0 = args.loss.iter().position(|&l| l == 0.0);
    let bare = args.delay.iter().find(|&&d| d == Delay::Bare).copied();
    let one_ms = args
        .delay
        .iter()
        .find(|&&d| d == Delay::Added(Duration::from_millis(1)))
        .copied();
    let cell = |r: &Round, chunk: u16, delay: Delay, window: u16| -> Option<f64> {
        r.cells
            .get(&Key {
                chunk,
                delay,
                loss: loss0?,
                window,
            })
            .map(|d| d.goodput)
    };
    let mut push = |name: String, value: f64, aim: &str| {
        if value.is_finite() {
            table.push(vec![Cell::text(name), Cell::num(value, 2), Cell::text(aim)]);
        }
    };
    for &chunk in &args.chunks {
        let payload = usize::from(chunk);
        let granted = granted_windows(args, chunk);
        let w64 = Config {
            window: args.max_window,
            ..Config::for_server()
        }
        .negotiate_window(64, chunk);
        let has = |w: u16| granted.contains_key(&w);
        // At the default chunk the window to show is 64, set against the blast; at the
        // largest, 16, set against the TCP copy (issue 10 §6).
        let (w, against_tcp) = if chunk == MAX_CHUNK {
            (16, true)
        } else {
            (64, false)
        };
        if let Some(bare) = bare.filter(|_| has(w)) {
            push(
                format!("loopback {chunk} B: window {w} ÷ blocking stop-and-wait"),
                over_rounds(rounds, |r| {
                    Some(cell(r, chunk, bare, w)? / r.blocking.get(&chunk)?.goodput)
                }),
                if against_tcp {
                    "≥ 2"
                } else {
                    "≥ 5, or the next line ≥ 0.6"
                },
            );
            if against_tcp {
                push(
                    format!("loopback {chunk} B: window {w} ÷ TCP copy"),
                    over_rounds(rounds, |r| {
                        Some(cell(r, chunk, bare, w)? / r.tcp.get(&chunk)?.goodput)
                    }),
                    "≥ 1",
                );
            } else {
                push(
                    format!("loopback {chunk} B: window {w} ÷ one-way blast"),
                    over_rounds(rounds, |r| {
                        Some(
                            cell(r, chunk, bare, w)?
                                / r.refs(chunk, Path::Direct)?.blast.mb_s(payload),
                        )
                    }),
                    "≥ 0.6, or the line above ≥ 5",
                );
            }
        }
        if let Some(one_ms) = one_ms {
            if has(w64) {
                push(
                    format!("1 ms each way, {chunk} B: window {w64} ÷ stop-and-wait"),
                    over_rounds(rounds, |r| {
                        Some(cell(r, chunk, one_ms, w64)? / cell(r, chunk, one_ms, 1)?)
                    }),
                    "≥ 20",
                );
                push(
                    format!("1 ms each way, {chunk} B: window {w64} ÷ min(window × chunk ÷ RTT, blast, closed-loop relay)"),
                    over_rounds(rounds, |r| {
                        let key = Key {
                            chunk,
                            delay: one_ms,
                            loss: loss0?,
                            window: w64,
                        };
                        let estimate = r.ceiling(&key, &args.loss)?;
                        Some(cell(r, chunk, one_ms, w64)? / estimate.min())
                    }),
                    "≥ 0.8",
                );
            }
        }
    }
    table
}
