// Loopback by default: the fixture and the local stack reach it on 127.0.0.1 only.
module.exports = ({ env }) => ({
  host: env('HOST', '127.0.0.1'),
  port: env.int('PORT', 1337),
  app: { keys: env.array('APP_KEYS', ['relay-fixture-key-a', 'relay-fixture-key-b']) },
});
