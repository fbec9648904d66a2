-- wrk script: POST /twilio/v1/tokens with the development profile's sample key (TOKENMINT_BENCH_AUTH).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = os.getenv("TOKENMINT_BENCH_AUTH")
wrk.body = '{"identity":"alice@example.com","grants":{"chat":{"endpoint_id":"app:alice:d1"},"video":{"room":"DailyStandup"}}}'
