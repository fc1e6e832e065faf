'use strict';
// A resource server written the common hand-made Node way (stdlib only): it reads a
// bearer token from the Authorization header (split(' ')[1], /^Bearer (.+)$/i), the
// query (URLSearchParams) and urlencoded bodies of any method (querystring, inflating
// gzip/deflate as body-parser does), and verifies ES256 (crypto.verify, ieee-p1363) or
// HS256 (createHmac) with exp in the future. 200 {"accepted":true,...} when any
// candidate verifies, else 401. GET /__seen (sent directly, not through the gateway)
// returns every request it handled.
//
// Environment: DIFF_ES256_PUB (SPKI PEM), DIFF_HS256_SECRET (base64). Prints "PORT <n>".
const http = require('http');
const crypto = require('crypto');
const querystring = require('querystring');
const zlib = require('zlib');

const esKey = crypto.createPublicKey(process.env.DIFF_ES256_PUB);
const hsSecret = Buffer.from(process.env.DIFF_HS256_SECRET, 'base64');
const seen = [];

function verify(token) {
  if (typeof token !== 'string' || token === '') return false;
  // The usual destructuring: a token is three dot-separated segments.
  const [h, p, s] = token.split('.');
  if (!h || !p || !s) return false;
  try {
    const header = JSON.parse(Buffer.from(h, 'base64url').toString());
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    const input = Buffer.from(h + '.' + p);
    const sig = Buffer.from(s, 'base64url');
    let ok = false;
    if (header.alg === 'ES256') {
      ok = crypto.verify('sha256', input, { key: esKey, dsaEncoding: 'ieee-p1363' }, sig);
    } else if (header.alg === 'HS256') {
      const mac = crypto.createHmac('sha256', hsSecret).update(input).digest();
      ok = sig.length === mac.length && crypto.timingSafeEqual(sig, mac);
    }
    return ok && typeof payload.exp === 'number' && payload.exp > Date.now() / 1000;
  } catch (e) {
    return false;
  }
}

function candidates(req, url, body) {
  const out = [];
  const auth = req.headers['authorization'];
  if (auth) {
    out.push(['split(" ")[1]', auth.split(' ')[1]]);
    const m = /^Bearer (.+)$/i.exec(auth);
    if (m) out.push(['/^Bearer (.+)$/i', m[1]]);
  }
  out.push(['URLSearchParams', url.searchParams.get('access_token')]);
  const ct = req.headers['content-type'] || '';
  if (body.length > 0 && ct.startsWith('application/x-www-form-urlencoded')) {
    let raw = body;
    const enc = (req.headers['content-encoding'] || 'identity').toLowerCase();
    try {
      if (enc === 'gzip') raw = zlib.gunzipSync(body);
      else if (enc === 'deflate') raw = zlib.inflateSync(body);
    } catch (e) { /* not inflatable: parse as is */ }
    out.push(['querystring body', querystring.parse(raw.toString()).access_token]);
  }
  return out;
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const url = new URL(req.url, 'http://backend');
    if (url.pathname === '/__seen') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(seen));
      return;
    }
    const body = Buffer.concat(chunks);
    let accepted = null;
    for (const [via, tok] of candidates(req, url, body)) {
      if (verify(tok)) {
        accepted = { via, token: crypto.createHash('sha256').update(tok).digest('hex') };
        break;
      }
    }
    const rec = { id: url.pathname, accepted: !!accepted, via: accepted ? accepted.via : '', token: accepted ? accepted.token : '' };
    seen.push(rec);
    res.writeHead(accepted ? 200 : 401, { 'content-type': 'application/json', 'x-diff-backend': 'node' });
    res.end(JSON.stringify({ backend: 'node', ...rec }));
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write('PORT ' + server.address().port + '\n');
});
