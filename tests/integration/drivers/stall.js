// node-postgres: the sequence of pgplex's stall regression (test_drivers.py). Connects,
// cancels a pg_sleep(30) through the driver's own cancel, then writes a 64 MB bytea into a
// plain table and reads it back. Prints "ok"; any failure exits 1 with the reason.
// Usage: node stall.js HOST PORT USER PASSWORD DBNAME TABLE
const pg = require('pg');

const [host, port, user, password, database, table] = process.argv.slice(2);
const config = { host, port: Number(port), user, password, database };
const SIZE = 64 * 1024 * 1024;

function payload() {
  const data = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) data[i] = (i * 7 + (i >> 13)) & 0xff;
  return data;
}

async function cancelledSleep(client) {
  const query = new pg.Query('SELECT pg_sleep(30)');
  const done = new Promise((resolve, reject) => {
    query.on('end', () => resolve(null));
    query.on('error', (error) => resolve(error));
  });
  client.query(query);
  await new Promise((resolve) => setTimeout(resolve, 500));
  new pg.Client(config).cancel(client, query);
  const error = await done;
  if (!error || error.code !== '57014') throw new Error(`the sleep was not cancelled: ${error}`);
}

async function main() {
  const client = new pg.Client(config);
  await client.connect();
  await client.query('SELECT 1');
  await cancelledSleep(client);
  const data = payload();
  await client.query(`INSERT INTO ${table} VALUES (1, $1)`, [data]);
  const result = await client.query(`SELECT b FROM ${table} WHERE id = 1`);
  const back = result.rows[0].b;
  if (!Buffer.isBuffer(back) || !back.equals(data)) throw new Error('the value came back different');
  await client.end();
  console.log('ok');
}

main().catch((error) => {
  console.error(`node-postgres: ${error.stack || error}`);
  process.exit(1);
});
