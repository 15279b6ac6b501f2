//! `holub user create | list`: a tenant's web-console users, on this machine's data
//! directory or, with `--aws`, in a deployment on AWS. `create` makes the first owner (who
//! invites the others from the console); the password is read from standard input, so it
//! stays out of shell history and process lists.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use holub_shared::domain::{ConsoleUser, Email, Origin, Role, TenantId};
use holub_shared::services::Users;
use holub_shared::services::users::UserError;

use crate::backend;
use crate::tenant::Where;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a console user who can sign in at once, reading their password (10 to 128
    /// characters) as one line of standard input. Prints the user as JSON.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// owner, sender or viewer.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        at: Where,
    },
    /// A tenant's console users, oldest first, one JSON object a line.
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: Where,
    },
}

/// Why a command failed: a stable code and a message for a person.
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<UserError> for Failure {
    fn from(e: UserError) -> Self {
        let message = match &e {
            // The chain says what the store met.
            UserError::Store(source) => format!("{e}: {source}"),
            _ => e.to_string(),
        };
        Failure::new(e.code(), message)
    }
}

pub async fn run(command: Command) -> ExitCode {
    let at = match &command {
        Command::Create { at, .. } | Command::List { at, .. } => at,
    };
    let (ports, local) = match backend::ports(at.aws(), at.data_dir(), Default::default()).await {
        Ok(opened) => opened,
        Err(e) => return fail(&Failure::new("store_unavailable", e)),
    };
    let users = Users::new(
        ports.users.clone(),
        ports.tenants.clone(),
        ports.clock.clone(),
    );
    let outcome = act(&users, command).await;
    drop((users, ports));
    backend::close(local).await;
    match outcome {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, Failure> {
    raw.parse()
        .map_err(|_| Failure::new("invalid_tenant", format!("{raw:?} is not a tenant id")))
}

fn view(user: &ConsoleUser) -> serde_json::Value {
    serde_json::json!({
        "user_id": user.id,
        "email": user.email,
        "role": user.role,
        "pending": user.pending,
        "created_at": user.created_at,
    })
}

/// The password: one line of standard input, its line ending stripped (nothing else).
fn read_password() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (10 to 128 characters; it is shown as you type): ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| {
        Failure::new(
            "password_unreadable",
            format!("cannot read the password from standard input: {e}"),
        )
    })?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

async fn act(users: &Users, command: Command) -> Result<Vec<String>, Failure> {
    match command {
        Command::Create {
            tenant,
            email,
            role,
            ..
        } => {
            let tenant = tenant_id(&tenant)?;
            let email = Email::parse(&email)
                .map_err(|e| Failure::new("invalid_email", format!("--email: {e}")))?;
            let role = Role::parse(&role).ok_or_else(|| {
                Failure::new(
                    "invalid_role",
                    format!("--role {role:?}: the roles are owner, sender and viewer"),
                )
            })?;
            let password = read_password()?;
            let user = users
                .create(&tenant, email, role, &password, &Origin::operator())
                .await?;
            let made = serde_json::json!({
                "user_id": user.id,
                "email": user.email,
                "role": user.role,
            });
            Ok(vec![made.to_string()])
        }
        Command::List { tenant, .. } => {
            let listed = users
                .list(&tenant_id(&tenant)?)
                .await
                .map_err(|e| Failure::from(UserError::Store(e)))?;
            Ok(listed.iter().map(|u| view(u).to_string()).collect())
        }
    }
}

fn fail(e: &Failure) -> ExitCode {
    eprintln!("holub: {}: {}", e.code, e.message);
    ExitCode::FAILURE
}
