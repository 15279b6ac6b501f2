//! The table of periodic tasks: what runs on a timer rather than on a request or a queue
//! message. `holub serve` runs each task on its own interval; the scheduled function runs
//! every task once per invocation (EventBridge, once a minute). Every task is safe to run
//! concurrently with itself and to repeat, so an overlapping or retried run does no harm.
//!
//! A failed run is logged as `periodic task failed` (error level, with the task's name),
//! which the deployment's alarm counts; it does not keep the other tasks from running.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;

/// What a task's run returns: how many things it handled, or why it failed.
pub type TaskResult = Result<usize, Box<dyn std::error::Error + Send + Sync>>;

type RunFn = Arc<dyn Fn() -> BoxFuture<'static, TaskResult> + Send + Sync>;

/// One periodic task.
#[derive(Clone)]
pub struct Task {
    pub name: &'static str,
    /// How often a timer of its own runs it.
    pub every: Duration,
    run: RunFn,
}

impl Task {
    pub fn new<F>(name: &'static str, every: Duration, run: F) -> Self
    where
        F: Fn() -> BoxFuture<'static, TaskResult> + Send + Sync + 'static,
    {
        Task {
            name,
            every,
            run: Arc::new(run),
        }
    }

    /// A task that runs `run` over one service of its own.
    pub fn over<S, F, Fut>(name: &'static str, every: Duration, service: Arc<S>, run: F) -> Self
    where
        S: Send + Sync + 'static + ?Sized,
        F: Fn(Arc<S>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = TaskResult> + Send + 'static,
    {
        Task::new(name, every, move || Box::pin(run(service.clone())))
    }

    /// One run, its failure logged.
    pub async fn run(&self) -> TaskRun {
        match (self.run)().await {
            Ok(handled) => TaskRun {
                task: self.name,
                handled,
                error: None,
            },
            Err(e) => {
                tracing::error!(task = self.name, error = %e, "periodic task failed");
                TaskRun {
                    task: self.name,
                    handled: 0,
                    error: Some(e.to_string()),
                }
            }
        }
    }
}

/// What one run of one task did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRun {
    pub task: &'static str,
    pub handled: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one run of the whole table did: per task, how many it handled, and the errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableRun {
    pub handled: std::collections::BTreeMap<&'static str, usize>,
    /// `"<task>: <error>"` per failed task (no message content).
    pub errors: Vec<String>,
}

#[derive(Clone, Default)]
pub struct TaskTable {
    tasks: Vec<Task>,
}

impl TaskTable {
    pub fn new(tasks: Vec<Task>) -> Self {
        TaskTable { tasks }
    }

    /// The table with `task` added at its end.
    pub fn with(mut self, task: Task) -> Self {
        self.tasks.push(task);
        self
    }

    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Every task once, in the table's order (a scheduled invocation).
    pub async fn run_once(&self) -> TableRun {
        let mut report = TableRun::default();
        for task in &self.tasks {
            let run = task.run().await;
            report.handled.insert(run.task, run.handled);
            if let Some(e) = run.error {
                report.errors.push(format!("{}: {e}", run.task));
            }
        }
        report
    }

    /// Every task on its own interval until `stop` turns true (the single binary's timers).
    /// A run that overruns its interval delays the next one instead of piling up.
    pub async fn run_on_timers(&self, stop: watch::Receiver<bool>) {
        let loops = self.tasks.iter().cloned().map(|task| {
            let mut stop = stop.clone();
            async move {
                let mut tick = tokio::time::interval(task.every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                    task.run().await;
                }
            }
        });
        futures::future::join_all(loops).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(name: &'static str, every: Duration, fail: bool) -> (Task, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let task = Task::new(name, every, move || {
            let counter = counter.clone();
            Box::pin(async move {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if fail {
                    Err("the store is unavailable".into())
                } else {
                    Ok(n)
                }
            })
        });
        (task, runs)
    }

    #[tokio::test]
    async fn a_run_once_runs_every_task_and_reports_failures_without_stopping() {
        let (a, a_runs) = counting("a", Duration::from_secs(1), false);
        let (b, b_runs) = counting("b", Duration::from_secs(1), true);
        let (c, c_runs) = counting("c", Duration::from_secs(1), false);
        let report = TaskTable::new(vec![a, b, c]).run_once().await;
        assert_eq!(report.handled.get("a"), Some(&1));
        assert_eq!(report.handled.get("b"), Some(&0));
        assert_eq!(report.errors, ["b: the store is unavailable"]);
        for runs in [a_runs, b_runs, c_runs] {
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_run_each_task_on_its_own_interval_until_stopped() {
        let (fast, fast_runs) = counting("fast", Duration::from_millis(500), false);
        let (slow, slow_runs) = counting("slow", Duration::from_secs(5), true);
        let table = TaskTable::new(vec![fast, slow]);
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(async move { table.run_on_timers(stopped).await });
        tokio::time::sleep(Duration::from_millis(10_250)).await;
        stop.send(true).unwrap();
        running.await.unwrap();
        // Ticks at 0, 0.5, ..., 10 s; and at 0, 5, 10 s.
        assert_eq!(fast_runs.load(Ordering::SeqCst), 21);
        assert_eq!(slow_runs.load(Ordering::SeqCst), 3);
    }
}
