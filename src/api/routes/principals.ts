/**
 * Local users and groups, and the gateways signals are sealed for. A user's password
 * is sent once in clear inside TLS and stored as a scrypt hash; responses never carry
 * the hash, only whether one is set.
 */
import type { FastifyInstance } from 'fastify'
import { Type } from 'typebox'
import { BeckonError } from '../../core/errors.js'
import { hashPassword } from '../../directory/directory.js'
import { permanentAddress } from '../../ipsec/addresses.js'
import { Gateway, Group, PRINCIPAL_NAME, User } from '../../store/records.js'
import { crudRoutes } from '../crud.js'
import type { ApiDeps } from '../deps.js'

const UserInput = Type.Object({
  name: Type.String({ pattern: PRINCIPAL_NAME }),
  /** Hashed with scrypt before it is stored. */
  password: Type.Optional(Type.String({ minLength: 8, maxLength: 200 })),
  password_hash: Type.Optional(User.properties.password_hash),
  groups: User.properties.groups,
  address: User.properties.address,
  token_sha256: User.properties.token_sha256,
}, { additionalProperties: false })

const UserView = Type.Object({
  name: Type.String(),
  groups: Type.Array(Type.String()),
  address: Type.String(),
  has_password: Type.Boolean(),
  tokens: Type.Integer(),
})

export function registerPrincipals (app: FastifyInstance, deps: ApiDeps): void {
  crudRoutes(app, deps, {
    kind: 'user',
    path: '/users',
    tag: 'users',
    record: User,
    input: UserInput,
    output: UserView,
    toRecord: async (b, before) => {
      const { password, ...rest } = b as { password?: string } & User
      // A PATCH merges the body into the stored record, so `password_hash` may be the stored
      // hash carried along; only a hash the client sent itself conflicts with `password`.
      if (password !== undefined && rest.password_hash !== undefined && rest.password_hash !== before?.password_hash) throw new BeckonError('BECKON_ERR_VALIDATION', 'body.password: give password or password_hash, not both')
      // Replacing a user without naming a password keeps the old one.
      const hash = password !== undefined ? await hashPassword(password) : rest.password_hash ?? before?.password_hash
      return { ...rest, ...(hash === undefined ? {} : { password_hash: hash }) }
    },
    view: (u) => ({ name: u.name, groups: u.groups, address: u.address ?? permanentAddress(deps.ipsecPrefix, 'user', u.name), has_password: u.password_hash !== undefined, tokens: u.token_sha256?.length ?? 0 }),
    check: async (u) => {
      const groups = new Set((await deps.store.list('group')).map((g) => g.name))
      u.groups.forEach((g, i) => { if (!groups.has(g)) throw new BeckonError('BECKON_ERR_VALIDATION', `body.groups[${i}]: unknown group ${g} (create it under /v1/groups)`) })
    },
  })
  crudRoutes(app, deps, { kind: 'group', path: '/groups', tag: 'groups', record: Group })
  crudRoutes(app, deps, { kind: 'gateway', path: '/gateways', tag: 'gateways', record: Gateway })
}
