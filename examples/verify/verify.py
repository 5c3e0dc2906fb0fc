# Verifying a Herald delivery in Python (standard library only).
# docs:start
import base64, hashlib, hmac, time

def verify_herald(headers, body: bytes, api_key: str, tolerance: int = 300) -> bool:
    """X-Signature: hex HMAC-SHA256 of "{X-Timestamp}.{raw body}", keyed by the apiKey."""
    timestamp = headers["x-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(api_key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-signature"])

def verify_standard(headers, body: bytes, signing_secret: str, tolerance: int = 300) -> bool:
    """Standard Webhooks: base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}"."""
    key = base64.b64decode(signing_secret.removeprefix("whsec_"))
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    signed = f'{headers["webhook-id"]}.{timestamp}.'.encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s.removeprefix("v1,")) for s in headers["webhook-signature"].split())
# docs:end

if __name__ == "__main__":
    # Usage: verify.py FIXTURE.json, with {"headers", "body", "apiKey", "signingSecret"}.
    import json, sys
    fixture = json.load(open(sys.argv[1]))
    body = fixture["body"].encode()
    ok = verify_herald(fixture["headers"], body, fixture["apiKey"]) and verify_standard(
        fixture["headers"], body, fixture["signingSecret"])
    print("valid" if ok else "invalid")
    sys.exit(0 if ok else 1)
