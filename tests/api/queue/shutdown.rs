//! Graceful shutdown of the queue workers: in-flight jobs finish, hanging ones are bounded.
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shutdown_lets_in_flight_job_finish_and_acks_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drain.db");
    let pool = sqlite_pool(&path, 4).await;
    let queue = JobQueue::connect(QueueBackend::Sqlite(pool.clone()))
        .await
        .unwrap();
    queue
        .push(
            Job::Notify {
                order_id: 7,
                attempt: 1,
            },
            None,
        )
        .await
        .unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let finished: Log = Arc::default();
    let slow: JobHandler = {
        let started = started.clone();
        let finished = finished.clone();
        Arc::new(move |job: Job| {
            let started = started.clone();
            let finished = finished.clone();
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                finished.lock().unwrap().push((job, Utc::now()));
                Ok(())
            }
            .boxed()
        })
    };
    let stop = {
        let started = started.clone();
        async move { started.notified().await }
    };
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), queue.run_workers(slow, 2, stop))
        .await
        .expect("run_workers did not return after shutdown")
        .unwrap();
    assert_eq!(
        finished.lock().unwrap().len(),
        1,
        "in-flight job was not finished"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "drain took {:?}",
        t0.elapsed()
    );

    // The completion was stored: a new run does not execute the job again.
    let log: Log = Arc::default();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runner = {
        let queue = queue.clone();
        let handler = recording_handler(log.clone());
        tokio::spawn(async move {
            queue
                .run_workers(handler, 1, async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(()).unwrap();
    runner.await.unwrap().unwrap();
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shutdown_is_bounded_when_a_job_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(&dir.path().join("hang.db"), 4).await;
    let queue = JobQueue::connect(QueueBackend::Sqlite(pool.clone()))
        .await
        .unwrap()
        .with_shutdown_timeout(Duration::from_secs(1));
    queue
        .push(
            Job::Expire {
                trade_id: "T-hang".into(),
            },
            None,
        )
        .await
        .unwrap();
    let started = Arc::new(tokio::sync::Notify::new());
    let hang: JobHandler = {
        let started = started.clone();
        Arc::new(move |_job: Job| {
            let started = started.clone();
            async move {
                started.notify_one();
                futures::future::pending::<()>().await;
                Ok(())
            }
            .boxed()
        })
    };
    let stop = {
        let started = started.clone();
        async move { started.notified().await }
    };
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), queue.run_workers(hang, 1, stop))
        .await
        .expect("run_workers did not return")
        .unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    pool.close().await;
}
