//! Durability under load: every token acknowledged before a `kill -9` is there after the restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{temp_path, Binary};
use crate::netease::{post_signed, urlencode, GET_TOKEN, VERIFY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_acknowledged_before_a_kill_9_under_load_survives_the_restart() {
    let store = temp_path("killed.redb");
    let store = store.to_str().expect("utf-8 path").to_owned();
    let env = [
        ("TOKENMINT_STORE__EMBEDDED__PATH", store.as_str()),
        ("TOKENMINT_NETEASE__APPS__SAMPLE__RATE_LIMIT", "0"),
    ];
    let mut served = Binary::serve(&env, std::process::Stdio::null());
    let base = format!("http://{}", served.addr);
    let client = reqwest::Client::new();
    let acknowledged = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));

    // Sixteen clients, each issuing tokens for new uids (defaults: replay guard on, fresh Nonce per request).
    let clients: Vec<_> = (0..16u64)
        .map(|worker| {
            let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let uid = 1_000_000 + worker * 1_000_000 + n;
                    let Some(answer) =
                        post_signed(&client, &base, GET_TOKEN, &format!("uid={uid}")).await
                    else {
                        return; // the service is gone
                    };
                    assert_eq!(answer["code"], 200, "{answer}");
                    let token = answer["token"].as_str().expect("token").to_owned();
                    acknowledged.lock().expect("lock").push((uid, token));
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().expect("lock").len() < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the load is served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed mid-load: no shutdown, no flush.
    let _ = served.child.kill();
    let _ = served.child.wait();
    for client in clients {
        client.await.expect("client");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let restarted = Binary::serve(&env, std::process::Stdio::null());
    let base = format!("http://{}", restarted.addr);
    for (uid, token) in &acknowledged {
        let form = format!("uid={uid}&token={}", urlencode(token));
        let answer = post_signed(&client, &base, VERIFY, &form)
            .await
            .expect("answered");
        assert_eq!(
            answer["code"], 200,
            "uid {uid} lost its acknowledged token: {answer}"
        );
        assert_eq!(
            answer["source"], "issued",
            "its record survived, not just its signature"
        );
    }
    assert!(acknowledged.len() >= 200);
}
