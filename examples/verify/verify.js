// Verifying a Herald delivery in Node.js (built-in crypto only).
// docs:start
const crypto = require("crypto");

const sameText = (a, b) =>
  a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));
const fresh = (timestamp, tolerance) => Math.abs(Date.now() / 1000 - Number(timestamp)) <= tolerance;

// X-Signature: hex HMAC-SHA256 of "{X-Timestamp}.{raw body}", keyed by the apiKey.
function verifyHerald(headers, rawBody, apiKey, tolerance = 300) {
  const timestamp = headers["x-timestamp"];
  const expected = crypto.createHmac("sha256", apiKey).update(`${timestamp}.`).update(rawBody).digest("hex");
  return fresh(timestamp, tolerance) && sameText(expected, headers["x-signature"]);
}

// Standard Webhooks: base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}".
function verifyStandard(headers, rawBody, signingSecret, tolerance = 300) {
  const key = Buffer.from(signingSecret.replace(/^whsec_/, ""), "base64");
  const timestamp = headers["webhook-timestamp"];
  const expected = crypto.createHmac("sha256", key)
    .update(`${headers["webhook-id"]}.${timestamp}.`).update(rawBody).digest("base64");
  return fresh(timestamp, tolerance) &&
    headers["webhook-signature"].split(" ").some((s) => sameText(s.replace(/^v1,/, ""), expected));
}
// docs:end

if (require.main === module) {
  // Usage: node verify.js FIXTURE.json, with {"headers", "body", "apiKey", "signingSecret"}.
  const fixture = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
  const body = Buffer.from(fixture.body, "utf8");
  const ok = verifyHerald(fixture.headers, body, fixture.apiKey) &&
    verifyStandard(fixture.headers, body, fixture.signingSecret);
  console.log(ok ? "valid" : "invalid");
  process.exit(ok ? 0 : 1);
}
