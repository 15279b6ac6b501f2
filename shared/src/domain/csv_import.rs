//! Contact imports from CSV: a streaming reader that turns the rows of a spreadsheet export
//! into checked contacts, one row at a time, in bounded memory.
//!
//! Excel in Ukraine saves "CSV (розділювачі – коми)" in Windows-1251 with `;` (the list
//! separator of the Ukrainian locale), and "CSV UTF-8" with a byte order mark; other tools
//! write UTF-8 with `,`. So, unless the caller says otherwise ([`ImportOptions`] always wins,
//! even over a BOM):
//! - **Encoding**: a UTF-8 BOM means UTF-8 (and is dropped); a UTF-16 BOM, NUL bytes or an
//!   Excel workbook are refused with how to save a CSV instead; otherwise the first 64 KiB
//!   decide: valid UTF-8 (a sequence cut by the 64 KiB end allowed) is UTF-8, anything else
//!   Windows-1251; 64 KiB of plain ASCII (Latin names sort first) decide nothing, and the
//!   first record with another byte settles it. Records are split at the byte level (`"`,
//!   the delimiter, CR and LF are ASCII in both encodings) and each cell is decoded on its
//!   own, so invalid UTF-8 past the point of decision costs one row (`encoding_invalid`),
//!   not the file.
//! - **Delimiter**: the most frequent of `;`, `,` and tab outside quotes in the header row. A
//!   tie goes to `;`, then `,`: a comma is common inside Ukrainian header text (`Прізвище,
//!   ім'я`) and is the decimal separator of the locale, a semicolon almost never is.
//! - **Records** follow RFC 4180, leniently as Excel reads them: quoted cells with `""`,
//!   delimiters and line breaks inside quotes, CRLF, LF or CR line ends, no final line end
//!   needed, a quote inside an unquoted cell kept as a character. Cells are trimmed; line
//!   breaks and tabs inside a cell become one space (a multi-line address is still one
//!   value). Rows whose cells are all empty are skipped, but still counted, so that
//!   [`ImportRow::row`] is the row the user sees in the spreadsheet (the header is row 1).
//! - **Memory**: a record longer than [`MAX_RECORD_BYTES`] is a `row_too_long` error, and the
//!   reader skips to the next line break *regardless of quotes*, so a runaway quote costs at
//!   most one record's worth of lines, never the rest of the file. Besides the sniffed 64 KiB,
//!   nothing bigger than one record is ever held.
//! - **Columns**: the caller's mapping wins; other headers are recognised in English,
//!   Ukrainian and Russian (tables below), and every other header becomes an attribute named
//!   by its transliteration (`Місто` → `misto`), so it can fill a `{{placeholder}}`.
//! - **Rows** are checked with the rules of [`super::contact`] and [`PhoneNumber::parse`],
//!   plus one repair: Excel reads `0671234567` as a number and saves `671234567`, so nine
//!   digits that make a Ukrainian mobile number with a `0` in front are taken as one
//!   ([`ImportRow::restored_zero`] says so, for the import report).
//!
//! Cells are personal data: no error message and no `Debug` output here contains one. Header
//! names are not (they are the tenant's column labels) and are quoted in messages.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, BufRead, Chain, Cursor, Read};

use super::contact::{self, ContactError, Details, MAX_ATTRIBUTES};
use super::phone::{PhoneError, PhoneNumber};
use super::transliteration::transliterate;

/// The longest record (header or row, line end excluded) the reader holds; longer ones are
/// refused and skipped.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// How much of the file's start decides the encoding and the delimiter.
pub const SNIFF_BYTES: usize = 64 * 1024;
/// The longest attribute name (as `Details::new` checks it).
const MAX_ATTRIBUTE_NAME: usize = 64;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// A UTF-16 BOM in either byte order (UTF-32 LE starts the same way).
const UTF16_BOMS: [&[u8]; 2] = [b"\xFF\xFE", b"\xFE\xFF"];
/// The magic numbers of an Excel workbook: `.xlsx` (a ZIP) and `.xls` (OLE2).
const WORKBOOK_MAGICS: [&[u8]; 2] = [b"PK\x03\x04", b"\xD0\xCF\x11\xE0"];
/// The delimiters detected, in the order that wins a tie.
const DELIMITERS: [u8; 3] = [b';', b',', b'\t'];

/// What Excel users are told to save their sheet as.
const SAVE_AS: &str = "in Excel choose “Save As” and “CSV UTF-8” or “CSV (розділювачі – коми)”";

/// Header names (compared by [`header_key`]) recognised without a mapping.
const PHONE_HEADERS: &[&str] = &[
    "phone",
    "phone number",
    "tel",
    "telephone",
    "mobile",
    "mobile phone",
    "msisdn",
    "телефон",
    "тел",
    "мобільний",
    "мобільний телефон",
    "номер телефону",
    "мобильный",
    "номер телефона",
];
/// Headers that mean the phone only when no other column does: "Номер" is as often an order
/// or a card number next to a "Телефон" column.
const WEAK_PHONE_HEADERS: &[&str] = &["number", "номер"];
const NAME_HEADERS: &[&str] = &[
    "name",
    "full name",
    "fio",
    "ім'я",
    "імя",
    "піб",
    "имя",
    "фио",
];
const LISTS_HEADERS: &[&str] = &["lists", "list", "tags", "списки", "список", "теги"];

/// How the caller wants a file read; `None` and an empty mapping mean "detect".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    pub encoding: Option<CsvEncoding>,
    /// `b';'`, `b','` or `b'\t'` in practice; any ASCII byte but `"`, CR and LF.
    pub delimiter: Option<u8>,
    /// Header (as in the file; matched trimmed and case-insensitively) → what its column is.
    pub mapping: Vec<(String, Target)>,
}

/// The text encodings a contact file may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CsvEncoding {
    Utf8,
    /// Excel's "CSV (розділювачі – коми)" on a Ukrainian (or Russian) Windows.
    Windows1251,
}

impl CsvEncoding {
    /// `utf-8` or `windows-1251` (also `utf8`, `cp1251`, `windows1251`), any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Some(CsvEncoding::Utf8),
            "windows-1251" | "windows1251" | "cp1251" | "cp-1251" => Some(CsvEncoding::Windows1251),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CsvEncoding::Utf8 => "utf-8",
            CsvEncoding::Windows1251 => "windows-1251",
        }
    }
}

impl fmt::Display for CsvEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Phone,
    Name,
    /// List names, split on `|` or `,`.
    Lists,
    /// The value of the named attribute (ASCII letters, digits and `_`, at most 64).
    Attribute(String),
    Skip,
}

/// Why a file cannot be imported at all. Each variant has a stable machine-readable code.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file could not be read")]
    Unreadable(#[source] io::Error),
    #[error("the file is empty: it has no header row")]
    Empty,
    #[error("this is an Excel workbook, not a CSV file: {SAVE_AS}")]
    NotCsv,
    #[error("the file is in UTF-16 (“Unicode text”), which is not supported: {SAVE_AS}")]
    EncodingUnsupported,
    #[error(
        "the header row is not valid UTF-8: if the file was saved as “CSV (розділювачі – коми)”, import it as windows-1251"
    )]
    EncodingInvalid,
    #[error(
        "the first row holds a phone number, not column names: add a header row such as “Телефон;Ім'я”"
    )]
    HeaderMissing,
    #[error(
        "no column holds phone numbers (the columns are {}): name it “Телефон” or “phone”, or map it",
        quoted(.headers)
    )]
    PhoneColumnMissing { headers: Vec<String> },
    #[error("{0}")]
    HeaderInvalid(String),
    #[error("{0}")]
    MappingInvalid(String),
    #[error("the delimiter must be an ASCII character other than a quote or a line break")]
    DelimiterInvalid,
}

impl FileError {
    pub fn code(&self) -> &'static str {
        match self {
            FileError::Unreadable(_) => "file_unreadable",
            FileError::Empty => "file_empty",
            FileError::NotCsv => "file_not_csv",
            FileError::EncodingUnsupported => "encoding_unsupported",
            FileError::EncodingInvalid => "encoding_invalid",
            FileError::HeaderMissing => "header_missing",
            FileError::PhoneColumnMissing { .. } => "phone_column_missing",
            FileError::HeaderInvalid(_) => "header_invalid",
            FileError::MappingInvalid(_) => "mapping_invalid",
            FileError::DelimiterInvalid => "delimiter_invalid",
        }
    }
}

/// Headers for a message: `“Ім'я”, “Місто”`, at most 20 of them.
fn quoted(headers: &[String]) -> String {
    let mut list: Vec<String> = headers.iter().take(20).map(|h| format!("“{h}”")).collect();
    if headers.len() > 20 {
        list.push(format!("and {} more", headers.len() - 20));
    }
    list.join(", ")
}

/// A header the caller may want to look at: the import goes on without its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderWarning {
    /// The index in [`ImportReader::columns`]; `None` for a mapping entry or the header row
    /// as a whole.
    pub column: Option<usize>,
    pub header: String,
    /// `header_unnamed`, `header_duplicate`, `mapping_unused` or `too_many_attributes`.
    pub code: &'static str,
    pub message: String,
}

/// A row that became a contact.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The row in the spreadsheet (the header is row 1; blank rows count).
    pub row: u64,
    pub phone: PhoneNumber,
    /// The cell held nine digits, read as a Ukrainian mobile number missing its leading 0.
    pub restored_zero: bool,
    pub name: Option<String>,
    /// Non-empty cells of attribute columns, by attribute name.
    pub attributes: BTreeMap<String, String>,
    /// Checked, trimmed list names without duplicates, sorted.
    pub lists: Vec<String>,
}

impl fmt::Debug for ImportRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: the number masked, the name and attribute values left out.
        f.debug_struct("ImportRow")
            .field("row", &self.row)
            .field("phone", &self.phone)
            .field("restored_zero", &self.restored_zero)
            .field("name", &self.name.as_ref().map(|_| "…"))
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("lists", &self.lists)
            .finish()
    }
}

/// A row that was not imported. The message never quotes the row's cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub row: u64,
    /// `phone_missing`, a [`PhoneError::code`], a [`ContactError::code`], `encoding_invalid`,
    /// `row_too_long`, `quote_unclosed` or `file_unreadable`.
    pub code: &'static str,
    /// The header of the offending column, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "row {}, column “{field}”: {}", self.row, self.message),
            None => write!(f, "row {}: {}", self.row, self.message),
        }
    }
}

impl std::error::Error for RowError {}

/// Reads contacts from a CSV file, one row at a time.
pub struct ImportReader<R> {
    /// The sniffed prefix, then the rest of the file.
    source: Chain<Cursor<Vec<u8>>, R>,
    encoding: CsvEncoding,
    columns: Columns,
    warnings: Vec<HeaderWarning>,
    phone_column: usize,
    parser: Parser,
    bytes_read: u64,
    /// The row number of the last record read.
    row: u64,
    /// Set after a read error: nothing more can be trusted.
    failed: bool,
    /// Whether the encoding is settled. Not while a sniffed file has shown only ASCII: the
    /// first record with another byte settles it (see [`ImportReader::settle`]).
    settled: bool,
}

impl<R> fmt::Debug for ImportReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportReader")
            .field("encoding", &self.encoding)
            .field("delimiter", &char::from(self.parser.delimiter))
            .field("columns", &self.columns)
            .field("bytes_read", &self.bytes_read)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> ImportReader<R> {
    /// Detects what the options leave open and reads and maps the header row.
    pub fn new(mut reader: R, options: &ImportOptions) -> Result<Self, FileError> {
        let mut prefix = Vec::with_capacity(SNIFF_BYTES);
        (&mut reader)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut prefix)
            .map_err(FileError::Unreadable)?;
        let complete = prefix.len() < SNIFF_BYTES;

        if WORKBOOK_MAGICS.iter().any(|m| prefix.starts_with(m)) {
            return Err(FileError::NotCsv);
        }
        // UTF-16 without a BOM shows itself by NUL bytes, which no CSV export contains.
        if UTF16_BOMS.iter().any(|b| prefix.starts_with(b)) || prefix.contains(&0) {
            return Err(FileError::EncodingUnsupported);
        }
        let bom = prefix.starts_with(UTF8_BOM);
        let text = if bom {
            &prefix[UTF8_BOM.len()..]
        } else {
            &prefix[..]
        };
        let encoding = options.encoding.unwrap_or(if bom {
            CsvEncoding::Utf8
        } else {
            sniff_encoding(text, complete)
        });
        // A long file whose first 64 KiB are plain ASCII (Latin names sort first) says
        // nothing yet: its first other letters decide.
        let settled = options.encoding.is_some() || bom || complete || !text.is_ascii();
        let delimiter = options.delimiter.unwrap_or_else(|| sniff_delimiter(text));
        if matches!(delimiter, b'"' | b'\r' | b'\n') || !delimiter.is_ascii() {
            return Err(FileError::DelimiterInvalid);
        }

        let mut source = Cursor::new(prefix).chain(reader);
        let mut bytes_read = 0;
        if bom {
            source.consume(UTF8_BOM.len());
            bytes_read = UTF8_BOM.len() as u64;
        }
        let mut import = ImportReader {
            source,
            encoding,
            columns: Vec::new(),
            warnings: Vec::new(),
            phone_column: 0,
            parser: Parser::new(delimiter),
            bytes_read,
            row: 0,
            failed: false,
            settled,
        };
        let headers = import.read_header()?;
        let (columns, warnings) = map_columns(headers, &options.mapping)?;
        import.phone_column = columns
            .iter()
            .position(|(_, t)| *t == Target::Phone)
            .unwrap_or_default();
        // Cells past the last column are ignored, so they are not even kept.
        import.parser.keep = columns.len();
        import.columns = columns;
        import.warnings = warnings;
        Ok(import)
    }

    /// The header row's cells: the first record that is not blank.
    fn read_header(&mut self) -> Result<Vec<String>, FileError> {
        loop {
            let end = match self.read_record() {
                None => return Err(FileError::Empty),
                Some(Err(e)) => return Err(FileError::Unreadable(e)),
                Some(Ok(end)) => end,
            };
            self.row += 1;
            match end {
                End::TooLong => {
                    return Err(FileError::HeaderInvalid(format!(
                        "the header row is longer than {} KiB: is this a CSV file?",
                        MAX_RECORD_BYTES / 1024
                    )));
                }
                End::QuoteUnclosed => {
                    return Err(FileError::HeaderInvalid(
                        "a quote in the header row is never closed".into(),
                    ));
                }
                End::Record => {}
            }
            let cells = (0..self.parser.cells())
                .map(|i| decode(self.encoding, self.parser.cell(i)))
                .collect::<Option<Vec<_>>>()
                .ok_or(FileError::EncodingInvalid)?;
            self.parser.reset();
            if cells.iter().any(|c| !c.is_empty()) {
                return Ok(cells);
            }
        }
    }

    /// The next contact or refused row; `None` at the end of the file. Blank rows are skipped.
    pub fn next_row(&mut self) -> Option<Result<ImportRow, RowError>> {
        while !self.failed {
            let end = match self.read_record()? {
                Ok(end) => end,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(RowError {
                        row: self.row + 1,
                        code: "file_unreadable",
                        field: None,
                        message: format!("the file could not be read from this row on: {e}"),
                    }));
                }
            };
            self.row += 1;
            let error = |code, message: String| {
                Some(Err(RowError {
                    row: self.row,
                    code,
                    field: None,
                    message,
                }))
            };
            let outcome = match end {
                End::TooLong => error(
                    "row_too_long",
                    format!(
                        "the row is longer than {} KiB and was skipped up to the next line break (a quote that is never closed does this)",
                        MAX_RECORD_BYTES / 1024
                    ),
                ),
                End::QuoteUnclosed => error(
                    "quote_unclosed",
                    "a quoted cell is not closed by the end of the file".into(),
                ),
                End::Record => {
                    self.settle();
                    self.convert()
                }
            };
            self.parser.reset();
            if outcome.is_some() {
                return outcome;
            }
        }
        None
    }

    /// How much of the file has been read, BOM and header included: for a progress bar.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    pub fn encoding(&self) -> CsvEncoding {
        self.encoding
    }

    pub fn delimiter(&self) -> u8 {
        self.parser.delimiter
    }

    /// Every column of the header row, in order: its header (trimmed) and what it holds.
    pub fn columns(&self) -> &[(String, Target)] {
        &self.columns
    }

    /// What the header mapping left out or skipped.
    pub fn warnings(&self) -> &[HeaderWarning] {
        &self.warnings
    }

    /// Feeds the parser until a record ends; `None` at the end of the file.
    fn read_record(&mut self) -> Option<io::Result<End>> {
        loop {
            let chunk = match self.source.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if chunk.is_empty() {
                return self.parser.finish().map(Ok);
            }
            let (used, end) = self.parser.feed(chunk);
            self.source.consume(used);
            self.bytes_read += used as u64;
            if let Some(end) = end {
                return Some(Ok(end));
            }
        }
    }

    /// Settles the encoding of a sniffed file that was all ASCII so far at its first
    /// record with another byte: UTF-8 if that record's cells are valid UTF-8, else
    /// Windows-1251 (whose Cyrillic letters seldom form valid UTF-8 sequences, and never
    /// over a whole record of names).
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        let cells = 0..self.columns.len();
        if cells.clone().all(|i| self.parser.cell(i).is_ascii()) {
            return;
        }
        let utf8 = cells
            .into_iter()
            .all(|i| std::str::from_utf8(self.parser.cell(i)).is_ok());
        self.encoding = if utf8 {
            CsvEncoding::Utf8
        } else {
            CsvEncoding::Windows1251
        };
        self.settled = true;
    }

    /// The parsed record as a contact or an error; `None` if it is blank.
    fn convert(&self) -> Option<Result<ImportRow, RowError>> {
        let mut cells = Vec::with_capacity(self.columns.len());
        for (i, (header, _)) in self.columns.iter().enumerate() {
            match decode(self.encoding, self.parser.cell(i)) {
                Some(cell) => cells.push(cell),
                None => {
                    return Some(Err(RowError {
                        row: self.row,
                        code: "encoding_invalid",
                        field: Some(header.clone()),
                        message: "the cell is not valid UTF-8: if the file was saved as “CSV (розділювачі – коми)”, import it as windows-1251".into(),
                    }));
                }
            }
        }
        if cells.iter().all(String::is_empty) {
            return None;
        }
        Some(self.contact(&cells))
    }

    fn contact(&self, cells: &[String]) -> Result<ImportRow, RowError> {
        let row = self.row;
        let refuse = |column: Option<usize>, code, message: String| RowError {
            row,
            code,
            field: column.map(|i| self.columns[i].0.clone()),
            message,
        };
        let contact_error =
            |column: Option<usize>, e: ContactError| refuse(column, e.code(), e.to_string());

        let (phone, restored_zero) = phone(&cells[self.phone_column])
            .map_err(|(code, message)| refuse(Some(self.phone_column), code, message))?;

        let name_column = self.columns.iter().position(|(_, t)| *t == Target::Name);
        let name = name_column
            .map(|i| cells[i].as_str())
            .filter(|n| !n.is_empty());
        Details::new(name, BTreeMap::new()).map_err(|e| contact_error(name_column, e))?;

        let mut attributes = BTreeMap::new();
        let mut lists = Vec::new();
        let mut lists_column = None;
        for (i, ((_, target), cell)) in self.columns.iter().zip(cells).enumerate() {
            match target {
                Target::Attribute(key) if !cell.is_empty() => {
                    // One by one first, so an error names its column.
                    let one = BTreeMap::from([(key.clone(), cell.clone())]);
                    Details::new(None, one).map_err(|e| contact_error(Some(i), e))?;
                    attributes.insert(key.clone(), cell.clone());
                }
                Target::Lists => {
                    lists_column.get_or_insert(i);
                    lists.extend(
                        cell.split(['|', ','])
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_owned),
                    );
                }
                _ => {}
            }
        }
        let details = Details::new(name, attributes).map_err(|e| contact_error(None, e))?;
        let lists = contact::lists(&lists).map_err(|e| contact_error(lists_column, e))?;

        Ok(ImportRow {
            row,
            phone,
            restored_zero,
            name: details.name,
            attributes: details.attributes,
            lists: lists.into_iter().map(String::from).collect(),
        })
    }
}

impl<R: BufRead> Iterator for ImportReader<R> {
    type Item = Result<ImportRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// A phone cell as a number, and whether its leading 0 was restored; or an error code and
/// message.
fn phone(cell: &str) -> Result<(PhoneNumber, bool), (&'static str, String)> {
    if cell.is_empty() {
        return Err(("phone_missing", "the phone number cell is empty".into()));
    }
    let error = match PhoneNumber::parse(cell) {
        Ok(phone) => return Ok((phone, false)),
        Err(e) => e,
    };
    // Excel's number format drops the 0 of `0671234567`. Parsing `0` + the nine digits lets
    // phone.rs decide whether they are a Ukrainian *mobile* number, by its table.
    let digits: String = cell
        .chars()
        .filter(|c| !matches!(c, ' ' | '\u{a0}'))
        .collect();
    if error == PhoneError::MissingCountryCode
        && digits.len() == 9
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(phone) = PhoneNumber::parse(&format!("0{digits}"))
        && phone.is_ukrainian()
    {
        return Ok((phone, true));
    }
    Err((error.code(), error.to_string()))
}

/// UTF-8 if the sniffed bytes are; a sequence cut by the end of an incomplete sniff counts.
fn sniff_encoding(text: &[u8], complete: bool) -> CsvEncoding {
    match std::str::from_utf8(text) {
        Ok(_) => CsvEncoding::Utf8,
        Err(e) if e.error_len().is_none() && !complete => CsvEncoding::Utf8,
        Err(_) => CsvEncoding::Windows1251,
    }
}

/// The delimiter the first line with content uses most outside quotes.
fn sniff_delimiter(text: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    let mut content = false;
    for &b in text {
        match b {
            b'"' => {
                quoted = !quoted;
                content = true;
            }
            _ if quoted => {}
            b'\r' | b'\n' if content => break,
            // Lines of only delimiters (Excel's empty rows) do not decide.
            b'\r' | b'\n' => counts = [0; DELIMITERS.len()],
            _ => match DELIMITERS.iter().position(|&d| d == b) {
                Some(i) => counts[i] += 1,
                None => content |= b != b' ',
            },
        }
    }
    // `max_by_key` keeps the last of equal maxima, so walk from the least preferred.
    DELIMITERS
        .iter()
        .zip(counts)
        .rev()
        .max_by_key(|&(_, count)| count)
        .map_or(b';', |(&d, _)| d)
}

/// A cell's text: decoded, trimmed, line breaks and tabs inside it made single spaces.
/// `None` if it is not valid UTF-8.
fn decode(encoding: CsvEncoding, bytes: &[u8]) -> Option<String> {
    let text: Cow<'_, str> = match encoding {
        CsvEncoding::Utf8 => Cow::Borrowed(std::str::from_utf8(bytes).ok()?),
        CsvEncoding::Windows1251 => {
            encoding_rs::WINDOWS_1251
                .decode_without_bom_handling(bytes)
                .0
        }
    };
    let text = text.trim();
    let mut cell = String::with_capacity(text.len());
    // Inside a line break: the spaces around it go with it. (The text is trimmed, so a
    // break is always followed by something.)
    let mut gap = false;
    for c in text.chars() {
        if matches!(c, '\r' | '\n' | '\t') || (gap && c == ' ') {
            gap = true;
            continue;
        }
        if std::mem::take(&mut gap) {
            cell.truncate(cell.trim_end_matches(' ').len());
            cell.push(' ');
        }
        cell.push(c);
    }
    Some(cell)
}

/// A header for comparing with the tables: lower case, one kind of apostrophe, runs of
/// spaces, `_` and `-` as one space, no trailing `.` or `:` (`Тел.`, `Номер_телефону`).
fn header_key(header: &str) -> String {
    let mut key = String::with_capacity(header.len());
    let mut gap = false;
    for c in header.trim().to_lowercase().chars() {
        if c.is_whitespace() || matches!(c, '_' | '-') {
            gap = true;
            continue;
        }
        if std::mem::take(&mut gap) && !key.is_empty() {
            key.push(' ');
        }
        key.push(match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`' | '\u{B4}' => '\'',
            c => c,
        });
    }
    key.trim_end_matches(['.', ':']).to_owned()
}

/// A header as an attribute name: transliterated, lower case, runs of anything but
/// `[a-z0-9_]` as one `_`, no `_` at the ends, at most 64 characters. May be empty.
fn attribute_name(header: &str) -> String {
    let mut name = String::with_capacity(header.len());
    for c in transliterate(header).to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_matches('_');
    // All ASCII, so any byte index is a character boundary.
    name[..name.len().min(MAX_ATTRIBUTE_NAME)]
        .trim_end_matches('_')
        .to_owned()
}

/// Every column's header and what it holds, in order.
type Columns = Vec<(String, Target)>;

/// What a header means without a mapping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Phone,
    WeakPhone,
    Name,
    Lists,
    Other,
}

fn default_role(header: &str) -> Role {
    let key = header_key(header);
    let key = key.as_str();
    if PHONE_HEADERS.contains(&key) {
        Role::Phone
    } else if WEAK_PHONE_HEADERS.contains(&key) {
        Role::WeakPhone
    } else if NAME_HEADERS.contains(&key) {
        Role::Name
    } else if LISTS_HEADERS.contains(&key) {
        Role::Lists
    } else {
        Role::Other
    }
}

/// Decides what each column holds: the mapping first, then the tables, then attributes.
/// Several list columns are merged; two phone or name columns are an error.
///
/// A role (phone, name, lists) the mapping gives to some column is not also given by the
/// tables: those columns become attributes, so "map Мобільний to the phone" just works next to
/// a "Телефон" column.
fn map_columns(
    headers: Vec<String>,
    mapping: &[(String, Target)],
) -> Result<(Columns, Vec<HeaderWarning>), FileError> {
    let mut warnings = Vec::new();
    for (header, target) in mapping {
        if let Target::Attribute(name) = target
            && Details::new(None, BTreeMap::from([(name.clone(), String::new())])).is_err()
        {
            return Err(FileError::MappingInvalid(format!(
                "the attribute “{name}” for the column “{header}” is not 1 to {MAX_ATTRIBUTE_NAME} ASCII letters, digits and _"
            )));
        }
    }
    let lower = |s: &str| s.trim().to_lowercase();
    let mut used = vec![false; mapping.len()];
    let explicit: Vec<Option<Target>> = headers
        .iter()
        .map(|h| {
            let i = mapping.iter().position(|(m, _)| lower(m) == lower(h))?;
            used[i] = true;
            Some(mapping[i].1.clone())
        })
        .collect();
    for ((header, _), _) in mapping.iter().zip(&used).filter(|(_, used)| !**used) {
        warnings.push(HeaderWarning {
            column: None,
            header: header.clone(),
            code: "mapping_unused",
            message: format!(
                "the mapping names the column “{header}”, which the file does not have"
            ),
        });
    }
    let mapped = |target: Target| explicit.iter().flatten().any(|t| *t == target);
    let (phone_mapped, name_mapped, lists_mapped) = (
        mapped(Target::Phone),
        mapped(Target::Name),
        mapped(Target::Lists),
    );
    let roles: Vec<Role> = headers.iter().map(|h| default_role(h)).collect();
    let strong_phone = phone_mapped
        || explicit
            .iter()
            .zip(&roles)
            .any(|(e, r)| e.is_none() && *r == Role::Phone);

    // `None`: an attribute named after its header, decided below.
    let targets: Vec<Option<Target>> = explicit
        .into_iter()
        .zip(&roles)
        .map(|(explicit, role)| {
            explicit.or(match role {
                Role::Phone if !phone_mapped => Some(Target::Phone),
                Role::WeakPhone if !strong_phone => Some(Target::Phone),
                Role::Name if !name_mapped => Some(Target::Name),
                Role::Lists if !lists_mapped => Some(Target::Lists),
                _ => None,
            })
        })
        .collect();

    let columns_of = |target: Target| -> Vec<String> {
        headers
            .iter()
            .zip(&targets)
            .filter(|(_, t)| t.as_ref() == Some(&target))
            .map(|(h, _)| h.clone())
            .collect()
    };
    let phones = columns_of(Target::Phone);
    if phones.is_empty() {
        // A file without a header row has data where the headers should be.
        if headers.iter().any(|h| phone(h).is_ok()) {
            return Err(FileError::HeaderMissing);
        }
        return Err(FileError::PhoneColumnMissing { headers });
    }
    if phones.len() > 1 {
        return Err(FileError::HeaderInvalid(format!(
            "the columns {} all hold phone numbers: map all but one of them to an attribute or skip",
            quoted(&phones)
        )));
    }
    let names = columns_of(Target::Name);
    if names.len() > 1 {
        return Err(FileError::HeaderInvalid(format!(
            "the columns {} all hold the name: map all but one of them to an attribute or skip",
            quoted(&names)
        )));
    }

    // Attribute names: the mapping's first (they must not clash), then the headers' own.
    let mut taken = BTreeSet::new();
    for (header, target) in headers.iter().zip(&targets) {
        if let Some(Target::Attribute(name)) = target
            && !taken.insert(name.clone())
        {
            return Err(FileError::MappingInvalid(format!(
                "more than one column is mapped to the attribute “{name}” (the last one is “{header}”)"
            )));
        }
    }
    let mut columns = Vec::with_capacity(headers.len());
    for (column, (header, target)) in headers.into_iter().zip(targets).enumerate() {
        let target = match target {
            Some(target) => target,
            None => {
                let name = attribute_name(&header);
                let warning = if name.is_empty() {
                    Some((
                        "header_unnamed",
                        format!(
                            "the column “{header}” has no name that can be an attribute (letters or digits), so it is skipped"
                        ),
                    ))
                } else if taken.contains(&name) {
                    Some((
                        "header_duplicate",
                        format!(
                            "the column “{header}” would be the attribute “{name}” like another column, so it is skipped"
                        ),
                    ))
                } else {
                    None
                };
                match warning {
                    Some((code, message)) => {
                        warnings.push(HeaderWarning {
                            column: Some(column),
                            header: header.clone(),
                            code,
                            message,
                        });
                        Target::Skip
                    }
                    None => {
                        taken.insert(name.clone());
                        Target::Attribute(name)
                    }
                }
            }
        };
        columns.push((header, target));
    }
    if taken.len() > MAX_ATTRIBUTES {
        warnings.push(HeaderWarning {
            column: None,
            header: String::new(),
            code: "too_many_attributes",
            message: format!(
                "{} columns are attributes but a contact has at most {MAX_ATTRIBUTES}: rows with more filled cells will be refused; skip some columns",
                taken.len()
            ),
        });
    }
    Ok((columns, warnings))
}

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Its cells are in the parser.
    Record,
    /// Longer than [`MAX_RECORD_BYTES`]; skipped up to the next line break.
    TooLong,
    /// The file ended inside quotes.
    QuoteUnclosed,
}

/// Where the parser is within a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a cell: nothing but spaces so far.
    CellStart,
    /// In a cell that did not start with a quote.
    Unquoted,
    Quoted,
    /// Just after a quote inside quotes: the closing one, or the first of `""`.
    QuoteInQuoted,
    /// Past [`MAX_RECORD_BYTES`]: discarding up to the next line break.
    Skipping,
}

/// A byte-level CSV record parser that is fed chunks as they come.
struct Parser {
    delimiter: u8,
    state: State,
    /// The kept cells' bytes, one after the other.
    bytes: Vec<u8>,
    /// Where each kept cell ends in `bytes`.
    ends: Vec<usize>,
    /// How many cells of a record to keep: all for the header, then the columns.
    keep: usize,
    /// Cells completed in this record, kept or not.
    cells: usize,
    /// This record's bytes so far, line end excluded.
    len: usize,
    /// The last record ended with CR, so a LF right after it is the rest of that line end.
    after_cr: bool,
}

impl Parser {
    fn new(delimiter: u8) -> Self {
        Parser {
            delimiter,
            state: State::CellStart,
            bytes: Vec::new(),
            ends: Vec::new(),
            keep: usize::MAX,
            cells: 0,
            len: 0,
            after_cr: false,
        }
    }

    /// Parses from `chunk` until a record ends: how many bytes it used, and the end if one
    /// was reached.
    fn feed(&mut self, chunk: &[u8]) -> (usize, Option<End>) {
        for (i, &b) in chunk.iter().enumerate() {
            if self.state == State::Skipping {
                // Quotes no longer count: find the line break fast.
                return match chunk[i..].iter().position(|&b| matches!(b, b'\r' | b'\n')) {
                    Some(at) => {
                        self.after_cr = chunk[i + at] == b'\r';
                        (i + at + 1, Some(End::TooLong))
                    }
                    None => (chunk.len(), None),
                };
            }
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            if let Some(end) = self.byte(b) {
                return (i + 1, Some(end));
            }
        }
        (chunk.len(), None)
    }

    fn byte(&mut self, b: u8) -> Option<End> {
        match (self.state, b) {
            (State::Quoted, b'"') => self.state = State::QuoteInQuoted,
            (State::Quoted, _) => self.push(b),
            (State::QuoteInQuoted, b'"') => {
                self.push(b'"');
                self.state = State::Quoted;
            }
            (_, b'\r' | b'\n') => {
                self.end_cell();
                self.after_cr = b == b'\r';
                return Some(End::Record);
            }
            (_, d) if d == self.delimiter => self.end_cell(),
            (State::CellStart, b'"') => self.state = State::Quoted,
            // Leading spaces would be trimmed anyway; dropping them lets ` "a;b"` be quoted.
            (State::CellStart, b' ') => {}
            // Excel keeps a stray quote, and text after a closing quote, as characters.
            _ => {
                self.push(b);
                self.state = State::Unquoted;
            }
        }
        self.len += 1;
        if self.len > MAX_RECORD_BYTES {
            self.clear();
            self.state = State::Skipping;
        }
        None
    }

    fn push(&mut self, b: u8) {
        if self.cells < self.keep {
            self.bytes.push(b);
        }
    }

    fn end_cell(&mut self) {
        if self.cells < self.keep {
            self.ends.push(self.bytes.len());
        }
        self.cells += 1;
        self.state = State::CellStart;
    }

    /// At the end of the file: the last record's end, if there is one.
    fn finish(&mut self) -> Option<End> {
        match self.state {
            State::Skipping => Some(End::TooLong),
            State::Quoted => Some(End::QuoteUnclosed),
            _ if self.len == 0 && self.cells == 0 => None,
            _ => {
                self.end_cell();
                Some(End::Record)
            }
        }
    }

    /// The number of kept cells.
    fn cells(&self) -> usize {
        self.ends.len()
    }

    /// A kept cell's bytes; empty past the last one.
    fn cell(&self, i: usize) -> &[u8] {
        match self.ends.get(i) {
            Some(&end) => &self.bytes[i.checked_sub(1).map_or(0, |p| self.ends[p])..end],
            None => &[],
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.cells = 0;
        self.len = 0;
    }

    /// Ready for the next record (a pending CR of the last one is remembered).
    fn reset(&mut self) {
        self.clear();
        self.state = State::CellStart;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn open<'a>(
        bytes: &'a [u8],
        options: &ImportOptions,
    ) -> Result<ImportReader<&'a [u8]>, FileError> {
        ImportReader::new(bytes, options)
    }

    fn reader(bytes: &[u8]) -> ImportReader<&'_ [u8]> {
        open(bytes, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rows(bytes: &[u8]) -> Vec<Result<ImportRow, RowError>> {
        reader(bytes).collect()
    }

    fn ok(result: &Result<ImportRow, RowError>) -> &ImportRow {
        result.as_ref().unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(result: &Result<ImportRow, RowError>) -> &RowError {
        match result {
            Ok(row) => panic!("expected an error, got {row:?}"),
            Err(e) => e,
        }
    }

    fn file_error(bytes: &[u8], options: &ImportOptions) -> FileError {
        match open(bytes, options) {
            Ok(r) => panic!("expected a file error, got {r:?}"),
            Err(e) => e,
        }
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn utf8_with_commas_and_no_bom() {
        let mut r = reader("phone,name,city\n0671234567,Олена,Київ\n".as_bytes());
        assert_eq!(r.encoding(), CsvEncoding::Utf8);
        assert_eq!(r.delimiter(), b',');
        assert_eq!(
            r.columns(),
            [
                ("phone".to_owned(), Target::Phone),
                ("name".to_owned(), Target::Name),
                ("city".to_owned(), Target::Attribute("city".into())),
            ]
        );
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.row, 2);
        assert_eq!(row.phone.as_e164(), "+380671234567");
        assert!(!row.restored_zero);
        assert_eq!(row.name.as_deref(), Some("Олена"));
        assert_eq!(row.attributes, attrs(&[("city", "Київ")]));
        assert!(row.lists.is_empty());
        assert!(r.next_row().is_none());
        assert!(r.next_row().is_none());
    }

    #[test]
    fn utf8_with_bom_and_semicolons() {
        let mut file = UTF8_BOM.to_vec();
        file.extend_from_slice(
            "Телефон;Ім’я;Місто\r\n+380 50 123 45 67;Тарас;Львів\r\n".as_bytes(),
        );
        let mut r = reader(&file);
        assert_eq!(r.encoding(), CsvEncoding::Utf8);
        assert_eq!(r.delimiter(), b';');
        // The BOM is not part of the first header.
        assert_eq!(r.columns()[0], ("Телефон".to_owned(), Target::Phone));
        assert_eq!(r.columns()[1].1, Target::Name);
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.phone.as_e164(), "+380501234567");
        assert_eq!(row.name.as_deref(), Some("Тарас"));
        assert_eq!(row.attributes, attrs(&[("misto", "Львів")]));
        assert!(r.next_row().is_none());
        assert_eq!(r.bytes_read(), file.len() as u64);
    }

    #[test]
    fn windows_1251_is_sniffed_and_decoded() {
        let text =
            "Телефон;Ім'я;Місто\r\n0671234567;Олена Пчілка;Київ\r\n0931234567;Їжак;Біла Церква\r\n";
        let (file, _, unmappable) = encoding_rs::WINDOWS_1251.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&file).is_err());
        let mut r = reader(&file);
        assert_eq!(r.encoding(), CsvEncoding::Windows1251);
        assert_eq!(r.delimiter(), b';');
        let headers: Vec<_> = r.columns().iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(headers, ["Телефон", "Ім'я", "Місто"]);
        let first = r.next_row().unwrap().unwrap();
        assert_eq!(first.name.as_deref(), Some("Олена Пчілка"));
        assert_eq!(first.attributes, attrs(&[("misto", "Київ")]));
        let second = r.next_row().unwrap().unwrap();
        assert_eq!((second.row, second.phone.as_e164()), (3, "+380931234567"));
        assert_eq!(second.name.as_deref(), Some("Їжак"));
        assert_eq!(second.attributes, attrs(&[("misto", "Біла Церква")]));
        assert!(r.next_row().is_none());
    }

    #[test]
    fn explicit_encoding_and_delimiter_win() {
        // Cyrillic in UTF-8 read as Windows-1251 on request: mojibake, but no error.
        let file = "phone|city\n0671234567|Київ\n".as_bytes();
        let options = ImportOptions {
            encoding: Some(CsvEncoding::Windows1251),
            delimiter: Some(b'|'),
            mapping: Vec::new(),
        };
        let mut r = open(file, &options).unwrap();
        assert_eq!(
            (r.encoding(), r.delimiter()),
            (CsvEncoding::Windows1251, b'|')
        );
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.attributes["city"], "РљРёС—РІ");

        let quote = ImportOptions {
            delimiter: Some(b'"'),
            ..ImportOptions::default()
        };
        assert_eq!(file_error(file, &quote).code(), "delimiter_invalid");
    }

    #[test]
    fn encoding_names() {
        for (name, encoding) in [
            ("utf-8", CsvEncoding::Utf8),
            (" UTF8 ", CsvEncoding::Utf8),
            ("windows-1251", CsvEncoding::Windows1251),
            ("CP1251", CsvEncoding::Windows1251),
        ] {
            assert_eq!(CsvEncoding::parse(name), Some(encoding), "{name}");
            assert_eq!(CsvEncoding::parse(encoding.as_str()), Some(encoding));
        }
        assert_eq!(CsvEncoding::parse("koi8-u"), None);
    }

    #[test]
    fn delimiter_is_detected_from_the_header_row() {
        let cases: [(&str, u8); 7] = [
            ("phone;name;city\n", b';'),
            ("phone,name,city\n", b','),
            ("phone\tname\tcity\n", b'\t'),
            // Delimiters inside quotes do not count.
            ("\"phone,mobile\";name;city\n", b';'),
            ("\"a;b;c;d\",phone,name\n", b','),
            // A tie goes to `;`, and a single column too.
            ("Прізвище, ім'я;phone\n", b';'),
            ("phone\n0671234567\n", b';'),
        ];
        for (file, delimiter) in cases {
            assert_eq!(sniff_delimiter(file.as_bytes()), delimiter, "{file:?}");
        }
        // Excel's empty rows before the header do not decide.
        assert_eq!(sniff_delimiter(b";;;\r\n\r\nphone,name\n"), b',');
        let mut r = reader(b"\n,,\nphone,name,note\n0671234567,A,\"x;y\"\n");
        assert_eq!(r.delimiter(), b',');
        let row = r.next_row().unwrap().unwrap();
        // Blank rows count: the data is on the fourth line of the sheet.
        assert_eq!(row.row, 4);
        assert_eq!(row.attributes["note"], "x;y");
    }

    const QUOTED: &str = "phone;name;note;lists\r\n\
        \"067 123 45 67\";\"Шевченко; Тарас\";\"він сказав \"\"так\"\"\r\nі пішов\";\"VIP | Київ\"\r\n\
        \r\n\
        0501234567;  Леся  ; \"a \"\"b\"\" c\" ;\r\n\
        0631234567;\"Стефаник\";text \"with\" quotes;зима,Київ,, ,VIP";

    #[test]
    fn quotes_delimiters_and_line_breaks() {
        let all = rows(QUOTED.as_bytes());
        assert_eq!(all.len(), 3);
        let first = ok(&all[0]);
        assert_eq!(first.row, 2);
        assert_eq!(first.phone.as_e164(), "+380671234567");
        assert_eq!(first.name.as_deref(), Some("Шевченко; Тарас"));
        // The line break inside the quotes is one space.
        assert_eq!(
            first.attributes,
            attrs(&[("note", "він сказав \"так\" і пішов")])
        );
        assert_eq!(first.lists, ["VIP", "Київ"]);
        let second = ok(&all[1]);
        // The multi-line record is one row, the blank one another.
        assert_eq!(second.row, 4);
        assert_eq!(second.name.as_deref(), Some("Леся"));
        assert_eq!(second.attributes, attrs(&[("note", "a \"b\" c")]));
        assert!(second.lists.is_empty());
        let third = ok(&all[2]);
        assert_eq!(third.row, 5);
        assert_eq!(third.attributes, attrs(&[("note", "text \"with\" quotes")]));
        // Split on `,` and `|`, blanks dropped, duplicates merged, sorted.
        assert_eq!(third.lists, ["VIP", "Київ", "зима"]);
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let whole = rows(QUOTED.as_bytes());
        for capacity in 1..=17 {
            let r = ImportReader::new(
                BufReader::with_capacity(capacity, QUOTED.as_bytes()),
                &ImportOptions::default(),
            )
            .unwrap();
            assert_eq!(r.collect::<Vec<_>>(), whole, "capacity {capacity}");
        }
    }

    #[test]
    fn line_ends_crlf_lf_cr_and_none() {
        for file in [
            "phone;name\r\n0671234567;A\r\n\r\n0501234567;B\r\n",
            "phone;name\n0671234567;A\n\n0501234567;B\n",
            "phone;name\r0671234567;A\r\r0501234567;B",
            "phone;name\n0671234567;A\n;\n0501234567;B",
        ] {
            let all = rows(file.as_bytes());
            let got: Vec<_> = all
                .iter()
                .map(|r| (ok(r).row, ok(r).name.clone().unwrap()))
                .collect();
            assert_eq!(got, [(2, "A".to_owned()), (4, "B".to_owned())], "{file:?}");
        }
    }

    #[test]
    fn more_and_fewer_cells_than_headers() {
        let all = rows(b"phone;city;region\n0671234567;Kyiv;Kyivska;extra;more\n0501234567\n");
        assert_eq!(
            ok(&all[0]).attributes,
            attrs(&[("city", "Kyiv"), ("region", "Kyivska")])
        );
        // Missing cells are empty, and empty attribute cells are left out.
        assert!(ok(&all[1]).attributes.is_empty());
    }

    #[test]
    fn nine_digits_get_their_zero_back_only_for_mobile_codes() {
        let file = "phone\n671234567\n93 123 45 67\n441234567\n0671234567\n380671234567\n3.80671E+11\n67123456\n\n;\n";
        let all = rows(file.as_bytes());
        let restored = ok(&all[0]);
        assert_eq!(restored.phone.as_e164(), "+380671234567");
        assert!(restored.restored_zero);
        assert_eq!(ok(&all[1]).phone.as_e164(), "+380931234567");
        assert!(ok(&all[1]).restored_zero);
        // Nine digits of a landline (Kyiv 044) are not a number missing its zero.
        let landline = err(&all[2]);
        assert_eq!(
            (landline.row, landline.code, landline.field.as_deref()),
            (4, "phone_missing_country_code", Some("phone"))
        );
        assert!(!ok(&all[3]).restored_zero);
        // Excel's number format keeps 380…, but not its scientific notation.
        assert_eq!(ok(&all[4]).phone.as_e164(), "+380671234567");
        assert!(!ok(&all[4]).restored_zero);
        assert_eq!(err(&all[5]).code, "phone_invalid_character");
        assert_eq!(err(&all[6]).code, "phone_missing_country_code");
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn empty_phone_cell() {
        let all = rows(b"phone;name\n;Olena\n");
        let e = err(&all[0]);
        assert_eq!(
            (e.row, e.code, e.field.as_deref()),
            (2, "phone_missing", Some("phone"))
        );
    }

    #[test]
    fn a_ten_megabyte_line_costs_one_row() {
        let mut file = b"phone;note\n0671234567;".to_vec();
        file.resize(file.len() + 10 * 1024 * 1024, b'x');
        file.extend_from_slice(b"\n0501234567;fine\n");
        let mut r = ImportReader::new(
            BufReader::with_capacity(8 * 1024, &file[..]),
            &ImportOptions::default(),
        )
        .unwrap();
        let e = r.next_row().unwrap().unwrap_err();
        assert_eq!((e.row, e.code, e.field), (2, "row_too_long", None));
        // Never more than one record held.
        assert!(r.parser.bytes.capacity() <= 2 * MAX_RECORD_BYTES);
        let row = r.next_row().unwrap().unwrap();
        assert_eq!((row.row, row.phone.as_e164()), (3, "+380501234567"));
        assert_eq!(row.attributes["note"], "fine");
        assert!(r.next_row().is_none());
        assert_eq!(r.bytes_read(), file.len() as u64);
    }

    #[test]
    fn a_runaway_quote_does_not_swallow_the_file() {
        let mut file = b"phone;note\n0671234567;\"never closed\n".to_vec();
        while file.len() < MAX_RECORD_BYTES + 100 {
            file.extend_from_slice(b"0501234567;swallowed\n");
        }
        file.extend_from_slice(b"0931234567;after\n");
        let all = rows(&file);
        assert_eq!(err(&all[0]).code, "row_too_long");
        let last = ok(all.last().unwrap());
        assert_eq!(last.attributes["note"], "after");

        let all = rows(b"phone;note\n0671234567;\"never closed\n0501234567;x\n");
        assert_eq!(all.len(), 1);
        assert_eq!((err(&all[0]).row, err(&all[0]).code), (2, "quote_unclosed"));
    }

    #[test]
    fn a_long_record_at_the_limit_is_fine() {
        let mut file = b"phone;note\n0671234567;".to_vec();
        let note = MAX_RECORD_BYTES - "0671234567;".len();
        file.resize(file.len() + note, b'x');
        file.push(b'\n');
        // The record fits; its attribute is too long for a contact.
        assert_eq!(err(&rows(&file)[0]).code, "attribute_invalid");
        file.pop();
        file.push(b'x');
        assert_eq!(err(&rows(&file)[0]).code, "row_too_long");
    }

    #[test]
    fn a_file_that_starts_in_ascii_is_settled_by_its_first_other_letters() {
        // Sorted by name, Latin names come first: 64 KiB of them say nothing of the
        // encoding of the Cyrillic ones after.
        let mut text = String::from("phone;name\n");
        let mut latin = 0;
        while text.len() <= SNIFF_BYTES {
            text.push_str("0671234567;Anna Koval\n");
            latin += 1;
        }
        text.push_str("0501234567;Тетяна Їжакевич\n0931234567;Zoe\n");
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(&text);
        let mut r = reader(&cp1251);
        let all: Vec<_> = r.by_ref().collect();
        assert_eq!(all.len(), latin + 2);
        assert!(
            all.iter().all(Result::is_ok),
            "{:?}",
            all.iter().find(|r| r.is_err())
        );
        assert_eq!(ok(&all[latin]).name.as_deref(), Some("Тетяна Їжакевич"));
        assert_eq!(r.encoding(), CsvEncoding::Windows1251);
        // The same in UTF-8 stays UTF-8.
        let mut r = reader(text.as_bytes());
        let all: Vec<_> = r.by_ref().collect();
        assert_eq!(ok(&all[latin]).name.as_deref(), Some("Тетяна Їжакевич"));
        assert_eq!(r.encoding(), CsvEncoding::Utf8);
    }

    #[test]
    fn invalid_utf8_past_the_sniffed_prefix_costs_one_row() {
        let mut file = "телефон,ім'я\n".as_bytes().to_vec();
        let mut good = 0;
        while file.len() <= SNIFF_BYTES {
            file.extend_from_slice("0671234567,Олена\n".as_bytes());
            good += 1;
        }
        file.extend_from_slice(b"0501234567,Ol\xFFena\n0931234567,Taras\n");
        let mut r = reader(&file);
        assert_eq!(r.encoding(), CsvEncoding::Utf8);
        let all: Vec<_> = r.by_ref().collect();
        assert_eq!(all.len(), good + 2);
        assert!(all[..good].iter().all(Result::is_ok));
        let e = err(&all[good]);
        assert_eq!(
            (e.row, e.code, e.field.as_deref()),
            (good as u64 + 2, "encoding_invalid", Some("ім'я"))
        );
        assert_eq!(ok(&all[good + 1]).name.as_deref(), Some("Taras"));
    }

    #[test]
    fn a_sequence_cut_by_the_sniff_window_is_still_utf8() {
        let mut text = "a".repeat(SNIFF_BYTES - 1).into_bytes();
        text.extend_from_slice("ї".as_bytes());
        assert_eq!(
            sniff_encoding(&text[..SNIFF_BYTES], false),
            CsvEncoding::Utf8
        );
        // At the end of the file it is not.
        assert_eq!(
            sniff_encoding(&text[..SNIFF_BYTES], true),
            CsvEncoding::Windows1251
        );
    }

    #[test]
    fn empty_files() {
        for file in [&b""[..], b"\n\r\n", UTF8_BOM, b";;;\r\n ; \r\n"] {
            assert_eq!(
                file_error(file, &ImportOptions::default()).code(),
                "file_empty",
                "{file:?}"
            );
        }
    }

    #[test]
    fn files_that_are_not_csv() {
        let not_csv = [
            (&b"\xFF\xFEp\0h\0o\0n\0e\0"[..], "encoding_unsupported"),
            (b"\xFE\xFF\0p\0h\0o\0n\0e", "encoding_unsupported"),
            (b"p\0h\0o\0n\0e\0\n\0", "encoding_unsupported"),
            (b"PK\x03\x04\x14\0\0\0", "file_not_csv"),
            (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", "file_not_csv"),
        ];
        for (file, code) in not_csv {
            let e = file_error(file, &ImportOptions::default());
            assert_eq!(e.code(), code, "{file:?}");
            assert!(e.to_string().contains("CSV (розділювачі – коми)"), "{e}");
        }
        let mut long = b"phone;".to_vec();
        long.resize(MAX_RECORD_BYTES + 10, b'x');
        assert_eq!(
            file_error(&long, &ImportOptions::default()).code(),
            "header_invalid"
        );
    }

    #[test]
    fn header_without_a_phone_column() {
        let e = file_error(
            "Ім'я;Місто\nОлена;Київ\n".as_bytes(),
            &ImportOptions::default(),
        );
        assert_eq!(e.code(), "phone_column_missing");
        assert!(e.to_string().contains("“Ім'я”, “Місто”"), "{e}");
        // A file without a header row.
        let e = file_error(b"0671234567;Olena\n", &ImportOptions::default());
        assert_eq!(e.code(), "header_missing");
        assert!(!e.to_string().contains("067"));
    }

    #[test]
    fn two_phone_or_name_columns_are_ambiguous() {
        let e = file_error(b"phone;mobile;name\n", &ImportOptions::default());
        assert_eq!(e.code(), "header_invalid");
        assert!(e.to_string().contains("“phone”, “mobile”"), "{e}");
        let e = file_error("phone;name;ПІБ\n".as_bytes(), &ImportOptions::default());
        assert_eq!(e.code(), "header_invalid");
        // "Номер" is the phone only when nothing else is.
        let r = reader("Номер;Телефон\n".as_bytes());
        assert_eq!(r.columns()[0].1, Target::Attribute("nomer".into()));
        assert_eq!(r.columns()[1].1, Target::Phone);
        assert_eq!(
            reader("Номер;Місто\n".as_bytes()).columns()[0].1,
            Target::Phone
        );
    }

    #[test]
    fn header_synonyms() {
        let targets = |file: &str| -> Vec<Target> {
            let r = reader(file.as_bytes());
            r.columns().iter().map(|(_, t)| t.clone()).collect()
        };
        let phone_name_lists = [Target::Phone, Target::Name, Target::Lists];
        for file in [
            "  МОБІЛЬНИЙ  ;Імʼя;Lists\n",
            "Тел.;ФИО;tags\n",
            "Номер_телефону;Full-Name;теги\n",
            "msisdn,ім’я,Список\n",
            "\"Phone number\";fio;list\n",
        ] {
            assert_eq!(targets(file), phone_name_lists, "{file:?}");
        }
        assert_eq!(
            reader("  МОБІЛЬНИЙ  ;a\n".as_bytes()).columns()[0].0,
            "МОБІЛЬНИЙ"
        );
    }

    #[test]
    fn the_mapping_wins() {
        let options = ImportOptions {
            encoding: None,
            delimiter: None,
            mapping: vec![
                (" мобільний ТЕЛ ".into(), Target::Phone),
                ("місто".into(), Target::Attribute("city".into())),
                ("Примітка".into(), Target::Skip),
                ("Not in the file".into(), Target::Name),
            ],
        };
        let file =
            "Телефон;Мобільний тел;Місто;Примітка;City\n0441234567;0671234567;Київ;секрет;Kyiv\n";
        let mut r = open(file.as_bytes(), &options).unwrap();
        let targets: Vec<_> = r.columns().iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            targets,
            [
                // The mapped phone column makes the default one an attribute.
                Target::Attribute("telefon".into()),
                Target::Phone,
                Target::Attribute("city".into()),
                Target::Skip,
                // `city` is taken by the mapping.
                Target::Skip,
            ]
        );
        let codes: Vec<_> = r.warnings().iter().map(|w| (w.column, w.code)).collect();
        assert_eq!(
            codes,
            [(None, "mapping_unused"), (Some(4), "header_duplicate")]
        );
        let row = r.next_row().unwrap().unwrap();
        assert_eq!(row.phone.as_e164(), "+380671234567");
        assert_eq!(
            row.attributes,
            attrs(&[("city", "Київ"), ("telefon", "0441234567")])
        );

        let bad = ImportOptions {
            mapping: vec![("Місто".into(), Target::Attribute("місто".into()))],
            ..ImportOptions::default()
        };
        assert_eq!(file_error(file.as_bytes(), &bad).code(), "mapping_invalid");
        let twice = ImportOptions {
            mapping: vec![
                ("Місто".into(), Target::Attribute("city".into())),
                ("Примітка".into(), Target::Attribute("city".into())),
            ],
            ..ImportOptions::default()
        };
        assert_eq!(
            file_error(file.as_bytes(), &twice).code(),
            "mapping_invalid"
        );
    }

    #[test]
    fn other_headers_become_transliterated_attributes() {
        let long = "Дуже довга назва колонки ".repeat(5);
        let file = format!(
            "phone;Місто;Дата народження;Ім'я по батькові;E-mail;№;місто;{long};Знижка, %\n"
        );
        let r = reader(file.as_bytes());
        let targets: Vec<_> = r.columns().iter().map(|(_, t)| t.clone()).collect();
        let truncated = attribute_name(&long);
        // Cut at 64, then the cut's trailing `_` dropped.
        assert_eq!(
            truncated,
            "duzhe_dovha_nazva_kolonky_duzhe_dovha_nazva_kolonky_duzhe_dovha"
        );

        assert_eq!(
            targets,
            [
                Target::Phone,
                Target::Attribute("misto".into()),
                Target::Attribute("data_narodzhennia".into()),
                Target::Attribute("imia_po_batkovi".into()),
                Target::Attribute("e_mail".into()),
                Target::Skip,
                Target::Skip,
                Target::Attribute(truncated),
                Target::Attribute("znyzhka".into()),
            ]
        );
        let codes: Vec<_> = r.warnings().iter().map(|w| (w.column, w.code)).collect();
        assert_eq!(
            codes,
            [(Some(5), "header_unnamed"), (Some(6), "header_duplicate")]
        );
    }

    #[test]
    fn contact_rules_apply_with_their_codes() {
        let mut file = String::from("phone;name;lists;city\n");
        file.push_str(&format!("0671234567;{};;\n", "я".repeat(201)));
        file.push_str(&format!("0671234567;;{};\n", "a|".repeat(21)));
        file.push_str(&format!("0671234567;;{};\n", "я".repeat(65)));
        file.push_str(&format!("0671234567;;;{}\n", "я".repeat(501)));
        file.push_str("0671234567;\"a\u{7}b\";;\n");
        let got: Vec<_> = rows(file.as_bytes())
            .iter()
            .map(|r| (err(r).code, err(r).field.clone()))
            .collect();
        let field = |f: &str| Some(f.to_owned());
        assert_eq!(
            got,
            [
                ("name_invalid", field("name")),
                ("too_many_lists", field("lists")),
                ("list_name_invalid", field("lists")),
                ("attribute_invalid", field("city")),
                ("name_invalid", field("name")),
            ]
        );
    }

    #[test]
    fn too_many_attribute_columns_warn_and_refuse_full_rows() {
        let headers: Vec<String> = (0..=MAX_ATTRIBUTES).map(|i| format!("a{i}")).collect();
        let mut file = format!("phone;{}\n", headers.join(";"));
        file.push_str(&format!(
            "0671234567;{}\n",
            vec!["x"; MAX_ATTRIBUTES + 1].join(";")
        ));
        file.push_str("0501234567;x\n");
        let mut r = reader(file.as_bytes());
        assert_eq!(r.warnings().last().unwrap().code, "too_many_attributes");
        let e = r.next_row().unwrap().unwrap_err();
        assert_eq!((e.code, e.field), ("too_many_attributes", None));
        assert!(r.next_row().unwrap().is_ok());
    }

    #[test]
    fn no_personal_data_in_errors_or_debug() {
        let secrets = [
            "0441234567",
            "Шевченко",
            "7777777",
            "secret-list",
            "Хрещатик",
        ];
        let file = "phone;name;lists;address\n\
            0441234567;Шевченко;;\n\
            06777777\u{1}77;Шевченко;;Хрещатик\n\
            0671234567;\"Шевченко\u{7}\";;Хрещатик\n\
            0671234567;Шевченко;secret-list\u{7};Хрещатик\n\
            0671234567;Шевченко;;Хрещатик\u{7}\n\
            0677777777;Шевченко;Клієнти;Хрещатик\n";
        let mut r = reader(file.as_bytes());
        let all: Vec<_> = r.by_ref().collect();
        assert_eq!(all.len(), 6);
        for result in &all {
            let shown = match result {
                Ok(row) => format!("{row:?}"),
                Err(e) => format!("{e} {e:?}"),
            };
            for secret in secrets {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        // List names are the tenant's labels, not the person's data (as in `contact`).
        assert_eq!(
            format!("{:?}", ok(&all[5])),
            "ImportRow { row: 7, phone: PhoneNumber(\"+38067*****77\"), restored_zero: false, \
             name: Some(\"…\"), attributes: [\"address\"], lists: [\"Клієнти\"] }"
        );
        assert!(!format!("{r:?}").contains("Шевченко"));
    }

    #[test]
    fn a_read_error_ends_the_import() {
        /// The file, then a broken connection.
        struct Broken<'a>(&'a [u8]);
        impl Read for Broken<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("connection reset"));
                }
                self.0.read(buf)
            }
        }
        let file = b"phone\n0671234567\n0501234567\n";
        assert_eq!(
            ImportReader::new(BufReader::new(Broken(file)), &ImportOptions::default())
                .unwrap_err()
                .code(),
            "file_unreadable"
        );
        // Past the sniffed prefix, the error is the last "row".
        let mut file = b"phone\n".to_vec();
        while file.len() < SNIFF_BYTES + 100 {
            file.extend_from_slice(b"0671234567\n");
        }
        let r = ImportReader::new(BufReader::new(Broken(&file)), &ImportOptions::default());
        let all: Vec<_> = r.unwrap().collect();
        let (last, rows) = all.split_last().unwrap();
        assert!(rows.iter().all(Result::is_ok));
        assert_eq!(err(last).code, "file_unreadable");
        assert_eq!(err(last).row, rows.len() as u64 + 2);
    }

    #[test]
    fn bytes_read_grows_with_the_rows() {
        let file = "phone;name\n0671234567;A\n0501234567;B\n".as_bytes();
        let mut r = reader(file);
        let mut seen = vec![r.bytes_read()];
        while r.next_row().is_some() {
            seen.push(r.bytes_read());
        }
        assert_eq!(seen, [11, 24, 37]);
    }
}
