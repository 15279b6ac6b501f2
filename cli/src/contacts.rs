//! `holub contacts import FILE --tenant T [--list NAME]`: a CSV export of a spreadsheet into a
//! tenant's contacts, on this machine's data directory or, with `--aws`, in a deployment on
//! AWS. The file is read as a stream, a chunk of rows at a time, so memory stays flat
//! whatever its size; a progress bar runs on standard error, the tally goes to standard
//! output as JSON, and `--report FILE` writes every row's result as CSV.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use holub_shared::adapters::sqlite::{SqliteConfig, SyncMode};
use holub_shared::domain::csv_import::{CsvEncoding, ImportOptions, ImportReader, Target};
use holub_shared::domain::{ListName, TenantId};
use holub_shared::services::contacts::{Contacts, ImportTally, RowResult};

use crate::backend;
use crate::tenant::Where;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Import contacts from a CSV file (UTF-8, with or without BOM, or Windows-1251 as Excel
    /// saves it; `,`, `;` or tab). A column of numbers is required; name, lists and any
    /// other column (an attribute, for `{{placeholders}}`) are optional. Rows of a number
    /// already stored are merged into its contact.
    Import(ImportArgs),
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The CSV file.
    file: PathBuf,
    #[arg(long)]
    tenant: String,
    /// A list to put every imported contact on.
    #[arg(long)]
    list: Option<String>,
    /// `utf-8` or `windows-1251` (default: detected).
    #[arg(long)]
    encoding: Option<String>,
    /// `,`, `;` or `tab` (default: detected from the header row).
    #[arg(long)]
    delimiter: Option<String>,
    /// What a column holds, `HEADER=phone|name|lists|skip|ATTRIBUTE` (repeatable; other
    /// headers are recognised by name).
    #[arg(long = "map", value_name = "HEADER=TARGET")]
    mapping: Vec<String>,
    /// Write each row's result here, as CSV: row, status, id, restored_zero, code, column,
    /// message.
    #[arg(long)]
    report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    at: Where,
}

pub async fn run(command: Command) -> ExitCode {
    let Command::Import(args) = command;
    // `synchronous=NORMAL`: a commit survives the process dying, only power loss may take
    // the last ones, and an import cut short is simply run again (rows of a stored number
    // are merged). Each commit then waits for no disk flush.
    let config = SqliteConfig {
        sync: SyncMode::Normal,
        ..SqliteConfig::default()
    };
    let (ports, local) = match backend::ports(args.at.aws(), args.at.data_dir(), config).await {
        Ok(opened) => opened,
        Err(e) => return fail(e),
    };
    let contacts = Contacts::new(ports.contacts.clone(), ports.clock.clone());
    let code = match import(&contacts, &args).await {
        Ok(tally) => {
            println!("{}", serde_json::to_string(&tally).unwrap_or_default());
            if tally.failed > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(e),
    };
    drop((contacts, ports));
    backend::close(local).await;
    code
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("holub: {e}");
    ExitCode::FAILURE
}

/// `HEADER=TARGET`.
fn mapping(raw: &str) -> Result<(String, Target), String> {
    let (header, target) = raw
        .rsplit_once('=')
        .ok_or_else(|| format!("--map {raw:?}: expected HEADER=TARGET"))?;
    let target = match target.trim().to_ascii_lowercase().as_str() {
        "phone" => Target::Phone,
        "name" => Target::Name,
        "lists" => Target::Lists,
        "skip" => Target::Skip,
        other
            if !other.is_empty()
                && other.len() <= 64
                && other
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Target::Attribute(other.to_owned())
        }
        _ => {
            return Err(format!(
                "--map {raw:?}: the target is phone, name, lists, skip, or an attribute name \
                 (ASCII letters, digits and _)"
            ));
        }
    };
    Ok((header.trim().to_owned(), target))
}

fn options(args: &ImportArgs) -> Result<ImportOptions, String> {
    let encoding = args
        .encoding
        .as_deref()
        .map(|e| {
            CsvEncoding::parse(e).ok_or_else(|| format!("--encoding {e:?}: utf-8 or windows-1251"))
        })
        .transpose()?;
    let delimiter = match args.delimiter.as_deref() {
        None => None,
        Some(",") => Some(b','),
        Some(";") => Some(b';'),
        Some("tab" | "\t") => Some(b'\t'),
        Some(other) => return Err(format!("--delimiter {other:?}: `,`, `;` or `tab`")),
    };
    let mapping = args
        .mapping
        .iter()
        .map(|m| mapping(m))
        .collect::<Result<_, _>>()?;
    Ok(ImportOptions {
        encoding,
        delimiter,
        mapping,
    })
}

async fn import(contacts: &Contacts, args: &ImportArgs) -> Result<ImportTally, String> {
    let tenant: TenantId = args
        .tenant
        .parse()
        .map_err(|_| format!("{:?} is not a tenant id", args.tenant))?;
    let list = args
        .list
        .as_deref()
        .map(|l| ListName::parse(l).map_err(|e| format!("--list: {e}")))
        .transpose()?;
    let options = options(args)?;
    let file = File::open(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = ImportReader::new(BufReader::with_capacity(1 << 16, file), &options)
        .map_err(|e| format!("{}: {e} ({})", args.file.display(), e.code()))?;
    for w in reader.warnings() {
        eprintln!("holub: column “{}”: {} ({})", w.header, w.message, w.code);
    }
    let mut report = match &args.report {
        None => None,
        Some(path) => {
            let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut w = BufWriter::new(file);
            writeln!(w, "row,status,id,restored_zero,code,column,message")
                .map_err(|e| e.to_string())?;
            Some(w)
        }
    };
    let mut progress = Progress::new(size, !args.quiet && std::io::stderr().is_terminal());
    let mut written = Ok(());
    let tally = contacts
        .import_csv(
            &tenant,
            &mut reader,
            list.as_ref(),
            |results, tally, read| {
                if let Some(w) = report.as_mut() {
                    for r in results {
                        if written.is_ok() {
                            written = write_result(w, r);
                        }
                    }
                }
                progress.show(read, tally, false);
            },
        )
        .await
        .map_err(|e| format!("the import stopped: {e}"))?;
    progress.show(reader.bytes_read(), &tally, true);
    written.map_err(|e| format!("the report: {e}"))?;
    if let Some(mut w) = report {
        w.flush().map_err(|e| e.to_string())?;
    }
    Ok(tally)
}

/// One CSV line of the report. Messages never hold a cell's content, only the tenant's own
/// header names, which are quoted like any cell.
fn write_result(w: &mut impl Write, r: &RowResult) -> std::io::Result<()> {
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let (code, column, message) = match &r.error {
        Some(e) => (e.code, quote(&e.field), quote(&e.message)),
        None => ("", String::new(), String::new()),
    };
    writeln!(
        w,
        "{},{},{},{},{code},{column},{message}",
        r.row,
        r.status,
        r.id.as_deref().unwrap_or(""),
        r.restored_zero,
    )
}

/// A progress bar on standard error: bytes read of the file, rows, rate.
struct Progress {
    size: u64,
    tty: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(size: u64, tty: bool) -> Self {
        let now = Instant::now();
        Progress {
            size,
            tty,
            started: now,
            last: now,
        }
    }

    fn show(&mut self, read: u64, tally: &ImportTally, last: bool) {
        if !self.tty || (!last && self.last.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.last = Instant::now();
        let share = if self.size == 0 {
            1.0
        } else {
            (read as f64 / self.size as f64).min(1.0)
        };
        let width = 30;
        let filled = (share * width as f64).round() as usize;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r[{}{}] {:>3.0}%  {} rows ({} new, {} merged, {} failed)  {:.0} rows/s ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            share * 100.0,
            tally.rows,
            tally.created,
            tally.updated,
            tally.failed,
            tally.rows as f64 / secs,
        );
        if last {
            eprintln!();
        }
    }
}
