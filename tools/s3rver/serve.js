// s3rver for drsync's store tests (tests/store/minimal_s3.py): a data directory given as
// the only argument, a free port on 127.0.0.1, no request log, path-style buckets only.
// Besides its own S3RVER/S3RVER it accepts the fake credentials of the other S3 tests:
// testing/testing, and FOOBARKEY/FOOBARSECRET, which moto's in-process mock puts in the
// environment (a process's boto3 session keeps the credentials it first found).
'use strict';

const S3rver = require('s3rver');
const { DUMMY_ACCOUNT } = require('s3rver/lib/models/account');

const [directory] = process.argv.slice(2);
if (!directory) {
  console.error('usage: node serve.js DATA_DIRECTORY');
  process.exit(2);
}
// s3rver's file store can throw outside a request on racing writes and deletes under one
// prefix (the claim protocol's .claims/<key>/ does exactly that); such an error used to end
// the process and fail every later test. Log it and keep serving: the request it belonged
// to fails, and the client retries it as any transient failure.
process.on('uncaughtException', err => console.error('s3rver: uncaught:', err));
process.on('unhandledRejection', err => console.error('s3rver: unhandled rejection:', err));
DUMMY_ACCOUNT.createKeyPair('testing', 'testing');
DUMMY_ACCOUNT.createKeyPair('FOOBARKEY', 'FOOBARSECRET');
new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, vhostBuckets: false })
  .run()
  .then(({ address, port }) => console.log(`S3rver listening on ${address}:${port}`))
  .catch(err => {
    console.error(err);
    process.exit(1);
  });
