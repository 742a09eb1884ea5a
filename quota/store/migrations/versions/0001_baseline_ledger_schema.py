"""baseline ledger schema: the ledger as first shipped (before stored plans)

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 16:51:12.942060
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

from quota.store import db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('balance',
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('lot', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pollutant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('project_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('nonneg', sa.Boolean(), nullable=False),
    sa.Column('amount_g', sa.BigInteger(), nullable=False),
    sa.Column('last_date', sa.Date(), nullable=True),
    sa.CheckConstraint('(NOT nonneg) OR amount_g >= 0', name='ck_balance_nonneg'),
    sa.PrimaryKeyConstraint('account', 'lot')
    )
    with op.batch_alter_table('balance', schema=None) as batch_op:
        batch_op.create_index('ix_balance_kind_pollutant', ['kind', 'pollutant'], unique=False)
        batch_op.create_index(batch_op.f('ix_balance_lot'), ['lot'], unique=False)
        batch_op.create_index(batch_op.f('ix_balance_project_id'), ['project_id'], unique=False)

    op.create_table('chain_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('import_batch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('imported_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_import_batch_sha256'), ['sha256'], unique=False)

    op.create_table('operation',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('command', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('rulebook',
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('loaded_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_table('source',
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('source_id')
    )
    op.create_table('txn',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('booked_at', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('memo', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('project_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('rulebook_version', sa.Integer(), nullable=False),
    sa.Column('meta', sa.Text(), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('txn', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_txn_effective_date'), ['effective_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_txn_project_id'), ['project_id'], unique=False)

    op.create_table('posting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('txn_seq', sa.Integer(), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('lot', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pollutant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('amount_g', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['txn_seq'], ['txn.seq'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('posting', schema=None) as batch_op:
        batch_op.create_index('ix_posting_account_lot', ['account', 'lot'], unique=False)
        batch_op.create_index(batch_op.f('ix_posting_txn_seq'), ['txn_seq'], unique=False)

    op.create_table('project',
    sa.Column('project_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('industry', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('needed_by', sa.Date(), nullable=True),
    sa.Column('must_fund', sa.Boolean(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reserved_until', sa.Date(), nullable=True),
    sa.Column('doc', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['import_batch.id'], ),
    sa.PrimaryKeyConstraint('project_id')
    )
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_state'), ['state'], unique=False)

    op.create_table('tally',
    sa.Column('tally_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('measure', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pollutant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('baseline_actual', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('permitted', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('post', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('baseline_year', sa.Integer(), nullable=True),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('assessor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report_no', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('creditable_g', sa.BigInteger(), nullable=False),
    sa.Column('supersedes', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['import_batch.id'], ),
    sa.ForeignKeyConstraint(['source_id'], ['source.source_id'], ),
    sa.PrimaryKeyConstraint('tally_id')
    )
    with op.batch_alter_table('tally', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tally_source_id'), ['source_id'], unique=False)

    op.create_table('lot',
    sa.Column('serial', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('tally_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pollutant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('expires', sa.Date(), nullable=True),
    sa.Column('issued_g', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['tally_id'], ['tally.tally_id'], ),
    sa.PrimaryKeyConstraint('serial'),
    sa.UniqueConstraint('tally_id')
    )
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_pollutant'), ['pollutant'], unique=False)

    op.create_table('project_need',
    sa.Column('project_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('pollutant', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('increment_g', sa.BigInteger(), nullable=False),
    sa.Column('ratio', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['project.project_id'], ),
    sa.PrimaryKeyConstraint('project_id', 'pollutant')
    )
    bind = op.get_bind()
    db.install_triggers(bind)
    bind.execute(sa.text("INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": db.GENESIS})


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table('project_need')
    with op.batch_alter_table('lot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_pollutant'))

    op.drop_table('lot')
    with op.batch_alter_table('tally', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tally_source_id'))

    op.drop_table('tally')
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_state'))

    op.drop_table('project')
    with op.batch_alter_table('posting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_posting_txn_seq'))
        batch_op.drop_index('ix_posting_account_lot')

    op.drop_table('posting')
    with op.batch_alter_table('txn', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_txn_project_id'))
        batch_op.drop_index(batch_op.f('ix_txn_effective_date'))

    op.drop_table('txn')
    op.drop_table('source')
    op.drop_table('rulebook')
    op.drop_table('operation')
    with op.batch_alter_table('import_batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_batch_sha256'))

    op.drop_table('import_batch')
    op.drop_table('chain_head')
    with op.batch_alter_table('balance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_balance_project_id'))
        batch_op.drop_index(batch_op.f('ix_balance_lot'))
        batch_op.drop_index('ix_balance_kind_pollutant')

    op.drop_table('balance')
    # ### end Alembic commands ###
