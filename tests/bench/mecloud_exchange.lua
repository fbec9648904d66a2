-- wrk script: POST /mecloud/v2/accesstoken with one pre-computed token (TOKENMINT_BENCH_MECLOUD_BODY). The service
-- runs with single_exchange off and no rate limit for this benchmark: wrk's Lua cannot compute SHA-1 per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("TOKENMINT_BENCH_MECLOUD_BODY")
