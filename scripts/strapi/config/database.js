// SQLite through better-sqlite3: one file per server, given by the fixture.
const path = require('path');

module.exports = ({ env }) => ({
  connection: {
    client: 'sqlite',
    connection: {
      filename: path.resolve(env('DATABASE_FILENAME', path.join(__dirname, '..', '.tmp', 'data.db'))),
    },
    useNullAsDefault: true,
  },
});
