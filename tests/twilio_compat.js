// Checks a tokenmint-minted Access Token with Twilio's official Node helper library (npm `twilio`).
//
// Reads JSON from stdin: {token, secret, account_sid, key_sid, request}, where request is the body sent to
// POST /twilio/v1/tokens. Verifies the token as Twilio's docs tell Node apps to (jsonwebtoken.verify, HS256 only;
// exits 1 with its error when it refuses), mints the library's own token for the same request, and prints both
// decoded tokens as JSON.
const jwt = require("jsonwebtoken");
const twilio = require("twilio");

const AccessToken = twilio.jwt.AccessToken;

function libraryToken(inp) {
  const req = inp.request;
  const token = new AccessToken(inp.account_sid, inp.key_sid, inp.secret, {
    identity: req.identity,
    ttl: req.ttl === undefined ? 3600 : req.ttl,
    region: req.region,
  });
  const grants = req.grants || {};
  if (grants.chat) {
    const c = grants.chat;
    token.addGrant(new AccessToken.ChatGrant({
      serviceSid: c.service_sid, endpointId: c.endpoint_id,
      deploymentRoleSid: c.deployment_role_sid, pushCredentialSid: c.push_credential_sid,
    }));
  }
  if (grants.video) token.addGrant(new AccessToken.VideoGrant({ room: grants.video.room }));
  if (grants.voice) {
    const v = grants.voice;
    const outgoing = v.outgoing || {};
    token.addGrant(new AccessToken.VoiceGrant({
      incomingAllow: (v.incoming || {}).allow, outgoingApplicationSid: outgoing.application_sid,
      outgoingApplicationParams: outgoing.params, pushCredentialSid: v.push_credential_sid, endpointId: v.endpoint_id,
    }));
  }
  if (grants.data_sync) {
    token.addGrant(new AccessToken.SyncGrant({
      serviceSid: grants.data_sync.service_sid, endpointId: grants.data_sync.endpoint_id,
    }));
  }
  if (grants.task_router) {
    const t = grants.task_router;
    token.addGrant(new AccessToken.TaskRouterGrant({
      workspaceSid: t.workspace_sid, workerSid: t.worker_sid, role: t.role,
    }));
  }
  if (grants.player) token.addGrant(new AccessToken.PlaybackGrant({ grant: grants.player }));
  return token.toJwt();
}

function decoded(token) {
  const full = jwt.decode(token, { complete: true });
  return { header: full.header, payload: full.payload };
}

let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const inp = JSON.parse(input);
  try {
    jwt.verify(inp.token, inp.secret, { algorithms: ["HS256"] });
  } catch (e) {
    process.stderr.write(`jsonwebtoken.verify refused the token: ${e.message}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({
    verified: true, ours: decoded(inp.token), library: decoded(libraryToken(inp)),
  }));
});
