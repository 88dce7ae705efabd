const { factories } = require('@strapi/strapi');

module.exports = factories.createCoreService('api::guest-session.guest-session');
